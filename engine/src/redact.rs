//! Secrets never shown: every string bound for a terminal, the journal or a state file passes through a
//! [`Redactor`], which replaces each known secret value with `***`.

use std::sync::{Arc, RwLock};

/// The set of secret values of a run. Steps add to it (values read from env files) as they learn them.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Remember a secret. Very short values are ignored: masking `1` everywhere would hide everything.
    pub fn add(&self, secret: impl Into<String>) {
        let secret = secret.into();
        if secret.len() < 4 {
            return;
        }
        if let Ok(mut s) = self.secrets.write()
            && !s.contains(&secret)
        {
            s.push(secret);
            // Longest first, so a secret containing another is masked whole.
            s.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let Ok(secrets) = self.secrets.read() else { return text.to_owned() };
        let mut out = text.to_owned();
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first() {
        let r = Redactor::new();
        r.add("hunter2");
        r.add("hunter2-extended");
        assert_eq!(r.redact("a hunter2-extended b hunter2"), "a *** b ***");
    }

    #[test]
    fn ignores_tiny_values() {
        let r = Redactor::new();
        r.add("1");
        assert_eq!(r.redact("101"), "101");
    }
}
