//! What `manage.py check --deploy` reported, read from its text (the format of Django's `CheckMessage`:
//! `obj: (id) message`, an optional `\tHINT: ...` line, under a `WARNINGS:`-style header per level), and which
//! of those issues fail the step: every warning or worse whose id the plan does not allow.

use std::fmt;

/// A system check's level, as its section header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    fn from_header(line: &str) -> Option<Self> {
        Some(match line.trim_end() {
            "DEBUGS:" => Self::Debug,
            "INFOS:" => Self::Info,
            "WARNINGS:" => Self::Warning,
            "ERRORS:" => Self::Error,
            "CRITICALS:" => Self::Critical,
            _ => return None,
        })
    }

    /// Warnings and worse fail the step unless allowed; infos and debugs are only shown.
    pub fn fails(self) -> bool {
        self >= Self::Warning
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        })
    }
}

/// One issue Django reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub level: Level,
    /// `security.W008`; `None` for a check that gave its message no id (it cannot be allowed).
    pub id: Option<String>,
    /// What the issue is about (`?` for the project as a whole).
    pub object: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.id.as_deref().unwrap_or("(no id)"), self.level)?;
        if self.object != "?" {
            write!(f, ", {}", self.object)?;
        }
        write!(f, "): {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// `obj: (id) message`: the id is the parenthesised word with a dot, ending in a level letter and digits.
fn issue_line(line: &str) -> Option<(&str, &str, &str)> {
    let (object, rest) = line.split_once(": (")?;
    let (id, message) = rest.split_once(") ")?;
    is_check_id(id).then_some((object, id, message))
}

/// A system check id as Django's convention writes them: `<app label>.<C|E|W|I|D><digits>` (`security.W008`,
/// `fields.E304`, `corsheaders.E013`).
pub fn is_check_id(id: &str) -> bool {
    let Some((label, code)) = id.rsplit_once('.') else {
        return false;
    };
    let mut chars = code.chars();
    let level = chars.next().is_some_and(|c| "CEWID".contains(c));
    let digits = chars.as_str();
    level
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && !label.is_empty()
        && label.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// Every issue in `check`'s output (stdout and stderr together), in the order Django printed them.
pub fn parse(output: &str) -> Vec<Issue> {
    let mut issues: Vec<Issue> = Vec::new();
    let mut level = None;
    for line in output.lines() {
        if let Some(l) = Level::from_header(line) {
            level = Some(l);
            continue;
        }
        let Some(current) = level else { continue };
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with("System check identified") {
            level = None;
            continue;
        }
        if let Some(hint) = line.trim_start().strip_prefix("HINT: ") {
            if let Some(last) = issues.last_mut() {
                last.hint = Some(hint.to_owned());
            }
        } else if let Some((object, id, message)) = issue_line(line) {
            issues.push(Issue {
                level: current,
                id: Some(id.to_owned()),
                object: object.to_owned(),
                message: message.to_owned(),
                hint: None,
            });
        } else if let Some((object, message)) = idless_line(line) {
            issues.push(Issue {
                level: current,
                id: None,
                object: object.to_owned(),
                message: message.to_owned(),
                hint: None,
            });
        } else if let Some(last) = issues.last_mut() {
            // A message of several lines.
            last.message.push(' ');
            last.message.push_str(line.trim());
        }
    }
    issues
}

/// `obj: message` of a check that gave no id: an object without spaces, at the start of the line.
fn idless_line(line: &str) -> Option<(&str, &str)> {
    let (object, message) = line.split_once(": ")?;
    (!object.is_empty() && !object.contains(char::is_whitespace)).then_some((object, message))
}

/// The issues that fail the step: warnings or worse whose id `allow` does not name.
pub fn refused<'a>(issues: &'a [Issue], allow: &[String]) -> Vec<&'a Issue> {
    issues
        .iter()
        .filter(|i| i.level.fails() && !i.id.as_ref().is_some_and(|id| allow.iter().any(|a| a == id)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Django 5.2's `check --deploy` printed for a `startproject` project with `DEBUG = True`, after the
    /// `SystemCheckError: ` prefix an error level adds, and an error with a hint.
    const OUTPUT: &str = "SystemCheckError: System check identified some issues:

ERRORS:
shop.Product.price: (fields.E130) DecimalFields must define a 'decimal_places' attribute.
\tHINT: Set decimal_places.

WARNINGS:
?: (security.W004) You have not set a value for the SECURE_HSTS_SECONDS setting. If your entire site is served only over SSL, you may want to consider setting a value and enabling HTTP Strict Transport Security.
?: (security.W008) Your SECURE_SSL_REDIRECT setting is not set to True.
?: (security.W018) You should not have DEBUG set to True in deployment.

INFOS:
?: (myapp.I001) A note
over two lines.

System check identified 5 issues (0 silenced).
";

    #[test]
    fn reads_each_issue_with_its_level_id_object_and_hint() {
        let issues = parse(OUTPUT);
        let ids: Vec<_> = issues.iter().map(|i| (i.level, i.id.as_deref().unwrap())).collect();
        assert_eq!(
            ids,
            [
                (Level::Error, "fields.E130"),
                (Level::Warning, "security.W004"),
                (Level::Warning, "security.W008"),
                (Level::Warning, "security.W018"),
                (Level::Info, "myapp.I001"),
            ]
        );
        assert_eq!(issues[0].object, "shop.Product.price");
        assert_eq!(issues[0].hint.as_deref(), Some("Set decimal_places."));
        assert_eq!(issues[3].message, "You should not have DEBUG set to True in deployment.");
        assert_eq!(issues[4].message, "A note over two lines.");
        assert_eq!(
            issues[0].to_string(),
            "fields.E130 (error, shop.Product.price): DecimalFields must define a 'decimal_places' attribute. (hint: \
             Set decimal_places.)"
        );
    }

    #[test]
    fn a_clean_check_has_no_issues() {
        assert!(parse("System check identified no issues (0 silenced).\n").is_empty());
    }

    #[test]
    fn allowed_ids_and_infos_pass_everything_else_fails() {
        let issues = parse(OUTPUT);
        let allow = ["security.W004".to_owned(), "security.W008".to_owned()];
        let refused: Vec<_> = refused(&issues, &allow).iter().filter_map(|i| i.id.as_deref()).collect();
        assert_eq!(refused, ["fields.E130", "security.W018"]);
    }

    #[test]
    fn an_issue_without_an_id_is_kept_and_cannot_be_allowed() {
        let issues = parse("WARNINGS:\n?: Something is off.\n?: (security.W008) Not redirected.\n");
        assert_eq!(issues.len(), 2);
        assert_eq!(issues[0].id, None);
        assert_eq!(refused(&issues, &["security.W008".to_owned()]), [&issues[0]]);
    }

    #[test]
    fn check_ids_follow_djangos_convention() {
        for id in ["security.W008", "fields.E304", "corsheaders.E013", "my_app.sub.C1", "async.E001"] {
            assert!(is_check_id(id), "{id}");
        }
        for id in ["W008", "security.X008", "security.W", "security.w008", ".W001", "sec urity.W001", "a..b.W1"] {
            assert!(!is_check_id(id), "{id}");
        }
    }
}
