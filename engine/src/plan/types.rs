//! Value types of step fields and properties ([`ValueType`]): parsing a value, after interpolation, into a
//! typed [`Value`], or saying what is wrong with it and how to write it instead.

use std::path::PathBuf;
use std::time::Duration;

use crate::diag::Code;
use crate::plan::model::Value;
use crate::plan::suggest::did_you_mean;
use crate::schema::ValueType;

/// Why a value does not fit its type: the message and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    pub code: Code,
    pub message: String,
    pub help: String,
}

impl TypeError {
    fn new(code: Code, message: impl Into<String>, help: impl Into<String>) -> Self {
        Self { code, message: message.into(), help: help.into() }
    }
}

/// A short name of a type, for `zdd kinds` and the book.
pub fn type_name(ty: ValueType) -> String {
    match ty {
        ValueType::String => "string".into(),
        ValueType::Path => "path".into(),
        ValueType::Duration => "duration".into(),
        ValueType::Port => "port".into(),
        ValueType::Url => "url".into(),
        ValueType::Int => "integer".into(),
        ValueType::Bool => "bool".into(),
        ValueType::Enum(words) => format!("one of {}", words.join("|")),
        ValueType::Strings => "strings".into(),
        ValueType::ConfigWord => "config word".into(),
        ValueType::ConfigWords => "config words".into(),
        ValueType::ConfigPath => "config path".into(),
        ValueType::Name => "name".into(),
        ValueType::StepRef(kinds) | ValueType::SettingsRef(kinds) => format!("name of a {} step", kinds.join("|")),
        ValueType::Shell => "shell script".into(),
        ValueType::SubPath => "relative path".into(),
    }
}

/// Parse `text` (already interpolated) as a value of type `ty`. [`ValueType::Strings`] is one string here.
pub fn parse_typed(ty: ValueType, text: &str) -> Result<Value, TypeError> {
    match ty {
        ValueType::String | ValueType::Strings | ValueType::Shell => Ok(Value::Str(text.to_owned())),
        ValueType::Path => parse_path(text).map(Value::Path),
        ValueType::Duration => parse_duration(text).map(Value::Duration),
        ValueType::Port => parse_port(text).map(Value::Port),
        ValueType::Url => parse_url(text).map(|()| Value::Str(text.to_owned())),
        ValueType::Int => text.trim().parse::<i64>().map(Value::Int).map_err(|_| {
            TypeError::new(Code::BadInt, format!("`{text}` is not a whole number"), "write digits, e.g. `4`")
        }),
        ValueType::Bool => match text {
            // `#true` is how a default is written in a kind's spec (and how KDL spells it).
            "true" | "#true" => Ok(Value::Bool(true)),
            "false" | "#false" => Ok(Value::Bool(false)),
            _ => Err(TypeError::new(
                Code::BadBool,
                format!("`{text}` is not a boolean"),
                "write `#true` or `#false` (KDL 2.0 booleans start with #)",
            )),
        },
        ValueType::Enum(words) => {
            if words.contains(&text) {
                return Ok(Value::Str(text.to_owned()));
            }
            let allowed = words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ");
            let help = match did_you_mean(text, words.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? Allowed: {allowed}"),
                None => format!("allowed: {allowed}"),
            };
            Err(TypeError::new(Code::BadEnum, format!("`{text}` is not one of the allowed values"), help))
        }
        ValueType::ConfigWord => parse_config_word(text, false).map(|()| Value::Str(text.to_owned())),
        ValueType::ConfigWords => parse_config_word(text, true).map(|()| Value::Str(text.to_owned())),
        ValueType::ConfigPath => {
            let path = parse_path(text)?;
            parse_config_word(text, false)?;
            Ok(Value::Path(path))
        }
        // A step reference is resolved against the plan's steps once every step is known (validate.rs).
        ValueType::Name | ValueType::StepRef(_) | ValueType::SettingsRef(_) => {
            parse_name(text).map(|()| Value::Str(text.to_owned()))
        }
        ValueType::SubPath => parse_sub_path(text).map(|()| Value::Str(text.to_owned())),
    }
}

fn parse_path(text: &str) -> Result<PathBuf, TypeError> {
    if text.is_empty() {
        return Err(TypeError::new(
            Code::BadPath,
            "the path is empty",
            "write an absolute path, or one relative to the plan file's directory",
        ));
    }
    if text.contains('\0') || text.contains('\n') {
        return Err(TypeError::new(
            Code::BadPath,
            "a path cannot contain a newline or NUL",
            "check the variables interpolated into this path",
        ));
    }
    Ok(PathBuf::from(crate::plan::vars::clean_path(text)))
}

/// `100ms`, `30s`, `2m`, `1h`, or combinations like `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, TypeError> {
    let err = || {
        TypeError::new(
            Code::BadDuration,
            format!("`{text}` is not a duration"),
            "write a number with a unit: `100ms`, `30s`, `2m`, `1h` (or combined: `1m30s`)",
        )
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(err()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn parse_port(text: &str) -> Result<u16, TypeError> {
    match text.trim().parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(TypeError::new(
            Code::BadPort,
            format!("`{text}` is not a TCP port"),
            "a port is a whole number from 1 to 65535",
        )),
    }
}

/// `http://host[:port]/path`, `https://...`, or `http+unix://<socket path>:<request path>`.
fn parse_url(text: &str) -> Result<(), TypeError> {
    let bad = |why: &str| {
        TypeError::new(
            Code::BadUrl,
            format!("`{text}` is not a usable URL: {why}"),
            "write `http://127.0.0.1:8000/health/`, `https://...`, or `http+unix:///run/app.sock:/health/` \
             (socket path, a colon, then the request path)",
        )
    };
    if text.chars().any(char::is_whitespace) {
        return Err(bad("it contains whitespace"));
    }
    if let Some(rest) = text.strip_prefix("http+unix://") {
        let Some((socket, path)) = rest.split_once(':') else {
            return Err(bad("no `:` between the socket path and the request path"));
        };
        if socket.is_empty() {
            return Err(bad("the socket path is empty"));
        }
        if !path.starts_with('/') {
            return Err(bad("the request path must start with `/`"));
        }
        return Ok(());
    }
    if !(text.starts_with("http://") || text.starts_with("https://")) {
        return Err(bad("it must start with http://, https:// or http+unix://"));
    }
    // The URL parser the HTTP client itself uses decides: what it accepts, the checks can request.
    let url = url::Url::parse(text).map_err(|e| {
        bad(&match e {
            url::ParseError::InvalidPort => "the port is not a number from 1 to 65535".to_owned(),
            url::ParseError::EmptyHost => "the host is empty".to_owned(),
            other => other.to_string(),
        })
    })?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("the host is empty"));
    }
    // The parser takes `http://h:/` as "no port"; written that way, a port was meant and is missing.
    let authority = text.split_once("://").map_or("", |(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""));
    if url.port() == Some(0) || authority.ends_with(':') {
        return Err(bad("the port is not a number from 1 to 65535"));
    }
    Ok(())
}

/// Characters that end, open or change a directive in an Nginx or systemd file, besides whitespace and control
/// characters: `;` ends a directive, `{ }` open and close blocks, `#` starts a comment, quotes and backslash
/// change how words are read, `$` expands a variable (Nginx, and systemd's `ExecStart=`), backtick for symmetry
/// with the shell.
pub const CONFIG_SPECIAL: &[char] = &[';', '{', '}', '#', '"', '\'', '\\', '$', '`'];

/// A value that lands in an Nginx or systemd file must not be able to end or open a directive. `spaces`: may
/// it be several words separated by spaces (`listen "8080 default_server"`)?
fn parse_config_word(text: &str, spaces: bool) -> Result<(), TypeError> {
    let bad = text
        .chars()
        .find(|&c| CONFIG_SPECIAL.contains(&c) || c.is_control() || (c.is_whitespace() && !(spaces && c == ' ')));
    match bad {
        None if !text.trim().is_empty() => Ok(()),
        None => Err(TypeError::new(
            Code::BadConfigWord,
            "the value is empty",
            "it would land in an Nginx or systemd file, where an empty word breaks the directive",
        )),
        Some(c) => Err(TypeError::new(
            Code::BadConfigWord,
            format!("`{}` contains {}", text.escape_debug(), describe_char(c)),
            if spaces {
                "it lands in an Nginx or systemd file, where a newline, ; { } # quotes, backslash, $ and backtick \
                 end or change the directive: remove it"
            } else {
                "it lands in an Nginx or systemd file as one word, where whitespace, ; { } # quotes, backslash, $ \
                 and backtick end or change the directive: remove it"
            },
        )),
    }
}

/// A relative path inside a directory: not absolute, no `..`, no empty component (`venv`, `.venv`, `env/py3`).
fn parse_sub_path(text: &str) -> Result<(), TypeError> {
    parse_path(text)?;
    let bad = |why: &str| {
        TypeError::new(
            Code::BadSubPath,
            format!("`{}` {why}", text.escape_debug()),
            "write a path relative to the release, without `..`: what zdd creates there, its undo removes",
        )
    };
    if text.starts_with('/') {
        return Err(bad("is absolute"));
    }
    if text.split('/').any(|c| c == ".." || c == ".")
        || text.split('/').filter(|c| c.is_empty()).count() > usize::from(text.ends_with('/'))
    {
        return Err(bad("has a `..`, `.` or empty component"));
    }
    Ok(())
}

/// A plain name: `[A-Za-z0-9._-]+`, not starting with `.` or `-`.
fn parse_name(text: &str) -> Result<(), TypeError> {
    let help = "use letters, digits, `-`, `_` and `.`, starting with a letter or digit: the value names files, \
                units or modules";
    if let Some(c) = text.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c))) {
        return Err(TypeError::new(
            Code::BadName,
            format!("`{}` contains {}", text.escape_debug(), describe_char(c)),
            help,
        ));
    }
    match text.chars().next() {
        None => Err(TypeError::new(Code::BadName, "the name is empty", help)),
        Some(c @ ('.' | '-')) => Err(TypeError::new(Code::BadName, format!("`{text}` starts with `{c}`"), help)),
        Some(_) => Ok(()),
    }
}

/// Characters a value interpolated into a shell script may contain besides letters and digits: none of them
/// is special to `/bin/sh` inside or outside double quotes. A space is allowed (it separates words when the
/// script does not quote the value: `{{nginx}} -t` with `nginx "nginx -p /srv/nginx"`).
const SHELL_SAFE: &[char] = &[' ', '/', '.', '_', '-', '+', '=', ':', ',', '@', '%', '^'];

/// Is `value` safe to interpolate into a shell script? `Err` gives the first character that is not.
pub fn check_shell_value(value: &str) -> Result<(), char> {
    match value.chars().find(|&c| !(c.is_alphanumeric() || SHELL_SAFE.contains(&c))) {
        Some(c) => Err(c),
        None => Ok(()),
    }
}

/// How a character is named in a message.
pub fn describe_char(c: char) -> String {
    match c {
        '\n' | '\r' => "a newline".into(),
        '"' | '\'' => format!("a quote `{c}`"),
        '\\' => "a backslash".into(),
        '`' => "a backtick".into(),
        c if c.is_whitespace() => "whitespace".into(),
        c if c.is_control() => format!("the control character {}", c.escape_unicode()),
        other => format!("`{other}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_mins(2));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_hours(1));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        for bad in ["", "30", "s", "3 s", "30sec", "-1s", "1.5s"] {
            assert_eq!(parse_duration(bad).unwrap_err().code, Code::BadDuration, "{bad}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_typed(ValueType::Port, "8001").unwrap(), Value::Port(8001));
        for bad in ["0", "65536", "http", "-3"] {
            assert_eq!(parse_typed(ValueType::Port, bad).unwrap_err().code, Code::BadPort);
        }
    }

    #[test]
    fn urls() {
        for good in [
            "http://127.0.0.1:8000/health/",
            "https://example.invalid",
            "http://[::1]:8080/x",
            "http+unix:///srv/app/run/current.sock:/health/",
        ] {
            assert!(parse_url(good).is_ok(), "{good}");
        }
        for bad in [
            "ftp://x",
            "http://",
            "http://h:/",
            "http://h:99999/",
            "http+unix:///s.sock",
            "http+unix:///s.sock:health",
            "http://a b",
            // `listen "127.0.0.1:8080"` interpolated into `http://127.0.0.1:{{listen}}`.
            "http://127.0.0.1:127.0.0.1:8080",
            "http://127.0.0.1:0/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enums_and_config_words() {
        let ty = ValueType::Enum(&["process", "systemd"]);
        assert!(parse_typed(ty, "systemd").is_ok());
        let e = parse_typed(ty, "sytemd").unwrap_err();
        assert!(e.help.contains("did you mean `systemd`"), "{}", e.help);
        assert!(parse_typed(ValueType::ConfigWord, "shop.example").is_ok());
        assert!(parse_typed(ValueType::ConfigWords, "127.0.0.1:80 default_server").is_ok());
        assert!(parse_typed(ValueType::ConfigWord, "a b").is_err());
        assert!(parse_typed(ValueType::ConfigPath, "/srv/a b").is_err());
        assert_eq!(parse_typed(ValueType::ConfigPath, "/srv/shop").unwrap(), Value::Path("/srv/shop".into()));
        for bad in ["a;b", "a\nb", "{", "x#", "\"q\"", "a\\b", "", "$(id)", "`id`", "a\tb", "a\u{7}b"] {
            assert_eq!(parse_typed(ValueType::ConfigWord, bad).unwrap_err().code, Code::BadConfigWord, "{bad}");
            assert!(parse_typed(ValueType::ConfigWords, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sub_paths() {
        for good in ["venv", ".venv", "env/py3", "media/"] {
            assert!(parse_typed(ValueType::SubPath, good).is_ok(), "{good}");
        }
        for bad in ["", "/", "/srv", "..", "a/../..", "./venv", "a//b", "a\nb"] {
            assert!(parse_typed(ValueType::SubPath, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        for good in ["shop", "shop.settings", "a-b_c.9", "9lives"] {
            assert!(parse_typed(ValueType::Name, good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "-rf", "../x", "a/b", "a b", "a;b", "é"] {
            assert_eq!(parse_typed(ValueType::Name, bad).unwrap_err().code, Code::BadName, "{bad}");
        }
    }

    #[test]
    fn shell_values() {
        assert!(check_shell_value("nginx -p /srv/a.b_c-d/n+1=2:3,4@5%").is_ok());
        for (bad, c) in [("a;b", ';'), ("$(id)", '$'), ("`id`", '`'), ("a\nb", '\n'), ("'", '\''), ("a|b", '|')] {
            assert_eq!(check_shell_value(bad), Err(c), "{bad}");
        }
    }
}
