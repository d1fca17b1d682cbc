//! SSH destinations as plans write them: `user@address[:port]`, `address`, `[v6-address]:port`.
//!
//! The address may be a name from the user's ssh config (`Host web1`): it is handed to `ssh` as written, so the
//! config's `HostName`, `ProxyJump` and `User` apply. A destination that `ssh` would read as an option (a leading
//! `-`) or that holds whitespace or control characters is refused here, before any process is started.

use std::fmt;

/// Where an SSH host is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `None`: the user the ssh config names, or the local user.
    pub user: Option<String>,
    /// A host name, an alias of the ssh config, or an IP address (IPv6 without brackets).
    pub address: String,
    /// `None`: the port the ssh config names, or 22.
    pub port: Option<u16>,
}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SSH destination `{given}`: {reason}")]
pub struct DestinationError {
    pub given: String,
    pub reason: &'static str,
}

impl Destination {
    pub fn parse(given: &str) -> Result<Self, DestinationError> {
        let refuse = |reason| DestinationError { given: given.to_owned(), reason };
        if given.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(refuse("spaces and control characters are not allowed"));
        }
        let (user, rest) = match given.rsplit_once('@') {
            Some((user, rest)) => {
                if user.is_empty() {
                    return Err(refuse("the user before `@` is empty"));
                }
                (Some(user.to_owned()), rest)
            }
            None => (None, given),
        };
        let (address, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let Some((address, after)) = bracketed.split_once(']') else {
                return Err(refuse("`[` without its `]`"));
            };
            match after {
                "" => (address, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (address, Some(port)),
                    None => return Err(refuse("only `:port` may follow `]`")),
                },
            }
        } else {
            match rest.split_once(':') {
                // More than one colon: a bare IPv6 address, no port.
                Some((_, tail)) if tail.contains(':') => (rest, None),
                Some((address, port)) => (address, Some(port)),
                None => (rest, None),
            }
        };
        if address.is_empty() {
            return Err(refuse("the address is empty"));
        }
        if address.starts_with('-') || user.as_deref().is_some_and(|u| u.starts_with('-')) {
            return Err(refuse("a leading `-` would be read by ssh as an option"));
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(refuse("the port must be a number from 1 to 65535")),
                Ok(n) => Some(n),
            },
        };
        Ok(Self { user, address: address.to_owned(), port })
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        let bracket = self.address.contains(':');
        match (bracket, self.port) {
            (true, Some(port)) => write!(f, "[{}]:{port}", self.address),
            (false, Some(port)) => write!(f, "{}:{port}", self.address),
            (_, None) => f.write_str(&self.address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(given: &str) -> Destination {
        let d = Destination::parse(given).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Destination::parse(&d.to_string()).as_ref(), Ok(&d), "round trip of {given}");
        d
    }

    fn dest(user: Option<&str>, address: &str, port: Option<u16>) -> Destination {
        Destination { user: user.map(str::to_owned), address: address.to_owned(), port }
    }

    #[test]
    fn the_forms_plans_write() {
        assert_eq!(ok("deploy@10.0.0.5:2222"), dest(Some("deploy"), "10.0.0.5", Some(2222)));
        assert_eq!(ok("web1"), dest(None, "web1", None));
        assert_eq!(ok("root@web1.example.com"), dest(Some("root"), "web1.example.com", None));
        assert_eq!(ok("[2001:db8::1]:22"), dest(None, "2001:db8::1", Some(22)));
        assert_eq!(ok("u@2001:db8::1"), dest(Some("u"), "2001:db8::1", None));
        assert_eq!(ok("deploy@10.0.0.5:2222").to_string(), "deploy@10.0.0.5:2222");
    }

    #[test]
    fn refuses_what_ssh_would_misread() {
        for bad in ["", "-oProxyCommand=x", "u@-x", "@host", "user@", "a b", "h:0", "h:99999", "h:x", "[::1", "[::1]x"]
        {
            assert!(Destination::parse(bad).is_err(), "accepted {bad:?}");
        }
        let err = Destination::parse("-oProxyCommand=x").unwrap_err();
        assert!(err.to_string().contains("option"), "{err}");
    }
}
