//! What a failed Django process means, in one line: the exception its traceback ends with, and whether that
//! exception says the database could not be reached (the migrate step's most common failure, whose cause
//! otherwise hides under forty lines of traceback).

/// The exception a Python traceback ends with, e.g. `django.db.utils.OperationalError: connection failed: ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonError {
    /// The exception's qualified name (`django.db.utils.OperationalError`).
    pub name: String,
    /// Its message, continuation lines included (psycopg adds a tab-indented hint line).
    pub message: String,
}

impl PythonError {
    /// The last exception in `stderr`: the last unindented line that starts with an exception's name
    /// (`...Error`, `...Exception`, `...Exit`, `...Interrupt`), with the lines after it.
    pub fn last_in(stderr: &str) -> Option<Self> {
        let lines: Vec<&str> = stderr.lines().collect();
        let start = lines.iter().rposition(|l| exception_name(l).is_some())?;
        let name = exception_name(lines[start])?;
        let first = lines[start][name.len()..].trim_start_matches(':').trim();
        let rest = lines[start + 1..].iter().map(|l| l.trim()).filter(|l| !l.is_empty());
        let message = std::iter::once(first).chain(rest).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
        Some(Self { name: name.to_owned(), message })
    }

    /// Does it say the database server could not be reached (refused, unknown host, timed out, going down)?
    pub fn is_unreachable_database(&self) -> bool {
        const SIGNS: &[&str] = &[
            // Not "connection failed" or "could not connect" alone: psycopg puts them before every connection
            // error, a refused password or a missing database included, which are not about reaching the server.
            "connection refused",
            "connection timed out",
            "timeout expired",
            "could not translate host name",
            "name or service not known",
            "no route to host",
            "network is unreachable",
            "server closed the connection unexpectedly",
            "the database system is starting up",
            "the database system is shutting down",
            "unable to open database file",
        ];
        let message = self.message.to_lowercase();
        self.name.ends_with("OperationalError") && SIGNS.iter().any(|s| message.contains(s))
    }

    /// The message's first line (the hint lines go to the error's detail).
    pub fn headline(&self) -> &str {
        self.message.lines().next().unwrap_or_default()
    }

    /// `Name: first line of the message` (or the name alone).
    pub fn name_and_headline(&self) -> String {
        match self.headline() {
            "" => self.name.clone(),
            line => format!("{}: {line}", self.name),
        }
    }
}

/// The exception name a traceback's last line starts with: a dotted identifier ending in a conventional
/// exception suffix, at the start of an unindented line, followed by `:` or the end of the line.
fn exception_name(line: &str) -> Option<&str> {
    let end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(line.len());
    let name = &line[..end];
    let rest = &line[end..];
    let starts_well = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let suffix = ["Error", "Exception", "Exit", "Interrupt"].iter().any(|s| name.ends_with(s));
    (starts_well && suffix && (rest.is_empty() || rest.starts_with(':'))).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: &str = "Traceback (most recent call last):\n  File \"/srv/venv/lib/python3.11/site-packages/django/db/backends/base/base.py\", line 279, in ensure_connection\n    self.connect()\n  File \"/srv/venv/lib/python3.11/site-packages/psycopg/connection.py\", line 126, in connect\n    raise last_ex.with_traceback(None)\npsycopg.OperationalError: connection failed: connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?\n\nThe above exception was the direct cause of the following exception:\n\nTraceback (most recent call last):\n  File \"<string>\", line 9, in <module>\n    raise dj_exc_value.with_traceback(traceback) from exc_value\ndjango.db.utils.OperationalError: connection failed: connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?\n";

    #[test]
    fn a_refused_password_or_a_missing_database_is_not_unreachable() {
        for message in [
            "connection failed: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"shop\"",
            "connection failed: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  database \"shop\" does not exist",
            "could not connect to server: FATAL:  sorry, too many clients already",
        ] {
            let error = PythonError { name: "django.db.utils.OperationalError".into(), message: message.into() };
            assert!(!error.is_unreachable_database(), "{message}");
        }
    }

    #[test]
    fn the_last_exception_of_a_chained_traceback_with_its_hint() {
        let e = PythonError::last_in(REFUSED).unwrap();
        assert_eq!(e.name, "django.db.utils.OperationalError");
        assert_eq!(
            e.headline(),
            "connection failed: connection to server at \"127.0.0.1\", port 1 failed: Connection refused"
        );
        assert!(e.message.ends_with("\nIs the server running on that host and accepting TCP/IP connections?"));
        assert!(e.is_unreachable_database());
    }

    #[test]
    fn unreachable_means_an_operational_error_about_the_connection() {
        let unknown_host = "django.db.utils.OperationalError: connection failed: could not translate host name \"db\" to address: Name or service not known\n";
        assert!(PythonError::last_in(unknown_host).unwrap().is_unreachable_database());
        let sqlite = "django.db.utils.OperationalError: unable to open database file\n";
        assert!(PythonError::last_in(sqlite).unwrap().is_unreachable_database());
        let locked = "django.db.utils.OperationalError: database is locked\n";
        assert!(!PythonError::last_in(locked).unwrap().is_unreachable_database());
        let refused_elsewhere = "ConnectionRefusedError: [Errno 111] Connection refused\n";
        assert!(!PythonError::last_in(refused_elsewhere).unwrap().is_unreachable_database());
    }

    #[test]
    fn a_management_command_error_and_a_bare_exception() {
        let e = PythonError::last_in("CommandError: Conflicting migrations detected\n").unwrap();
        assert_eq!(e.name_and_headline(), "CommandError: Conflicting migrations detected");
        let e = PythonError::last_in("Traceback (most recent call last):\n  File \"x\", line 1\nKeyboardInterrupt\n")
            .unwrap();
        assert_eq!(e.name_and_headline(), "KeyboardInterrupt");
    }

    #[test]
    fn no_exception_no_guess() {
        assert_eq!(PythonError::last_in(""), None);
        assert_eq!(PythonError::last_in("Operations to perform:\n  Apply all migrations: catalog\n"), None);
        assert_eq!(PythonError::last_in("    raise OperationalError: indented\n"), None);
        assert_eq!(PythonError::last_in("ErrorCount is 3\n"), None);
    }
}
