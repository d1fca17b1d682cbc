//! Reading a pip requirements file the way pip reads its names: does it (or a file it includes with `-r`) name a
//! package? `zdd init` and the `python-env` preflight use it to say, before a deploy, that gunicorn (which every
//! `service` step runs from the release's venv) will not be installed.

use std::path::Path;

use zdd_engine::host::Host;

/// What one requirements file says: whether it names `package`, and the files it includes (`-r FILE`,
/// `--requirement FILE`), relative to its own directory.
pub fn scan(text: &str, package: &str) -> (bool, Vec<String>) {
    let mut named = false;
    let mut includes = Vec::new();
    for line in text.lines().map(str::trim) {
        let lower = line.to_ascii_lowercase();
        named |= names(&lower, package);
        if lower.starts_with("-r ") || lower.starts_with("--requirement ") {
            includes.extend(line.split_whitespace().nth(1).map(str::to_owned));
        }
    }
    (named, includes)
}

/// Does this (lowercased) requirement line name `package`? A requirement starts with its name; a version, an
/// extra or a marker follows.
fn names(lower: &str, package: &str) -> bool {
    let name_end = lower.find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)));
    lower[..name_end.unwrap_or(lower.len())].replace('_', "-") == package
}

/// The line of a requirements file that names `package` (`Django>=4.2,<5.0`), without its comment: what
/// `zdd doctor` shows as the version a release will get.
pub fn line_naming<'t>(text: &'t str, package: &str) -> Option<&'t str> {
    text.lines().map(|l| l.split(" #").next().unwrap_or(l).trim()).find(|l| names(&l.to_ascii_lowercase(), package))
}

/// How deep `-r` includes are followed.
pub const MAX_INCLUDE_DEPTH: usize = 3;

/// Whether the requirements file on `host` (or a file it includes) names `package`; `None` when it cannot be
/// read (the preflight reports that on its own).
pub async fn host_file_names(host: &dyn Host, file: &Path, package: &str) -> Option<bool> {
    let mut pending = vec![(file.to_path_buf(), MAX_INCLUDE_DEPTH)];
    let mut first = true;
    while let Some((path, depth)) = pending.pop() {
        let text = match host.read_file(&path).await {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            // An include that is missing is pip's error to report; the file itself must be readable.
            _ if !first => continue,
            _ => return None,
        };
        first = false;
        let (named, includes) = scan(&text, package);
        if named {
            return Some(true);
        }
        if depth > 0 {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            pending.extend(includes.iter().map(|inc| (dir.join(inc), depth - 1)));
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use zdd_engine::host::LocalHost;

    use super::{host_file_names, line_naming, scan};

    #[tokio::test]
    async fn includes_are_followed_on_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("requirements.txt", "Django==5.2\n-r base.txt\n-r missing.txt\n");
        write("base.txt", "gunicorn==23\n");
        write("plain.txt", "wagtail==8.0\n");
        let host = LocalHost::new();
        for (file, expected) in [("requirements.txt", Some(true)), ("plain.txt", Some(false)), ("absent.txt", None)] {
            assert_eq!(host_file_names(&host, &dir.path().join(file), "gunicorn").await, expected, "{file}");
        }
    }

    #[test]
    fn names_and_includes_are_read_as_pip_reads_them() {
        let text = "Django==5.2\n# gunicorn\ngunicorn-extras==1\n-r base.txt\n--requirement  prod.txt\n";
        assert_eq!(scan(text, "gunicorn"), (false, vec!["base.txt".to_owned(), "prod.txt".to_owned()]));
        assert!(scan("Gunicorn[gevent]>=21 ; python_version > '3'\n", "gunicorn").0);
        assert!(scan("gunicorn\n", "gunicorn").0);
        assert!(!scan("-e .\n", "gunicorn").0);
    }

    #[test]
    fn the_line_naming_a_package_is_shown_without_its_comment() {
        let text = "# Django is pinned below
Django>=5.2,<6  # LTS next
gunicorn_extras==1
";
        assert_eq!(line_naming(text, "django"), Some("Django>=5.2,<6"));
        assert_eq!(line_naming(text, "gunicorn"), None);
        assert_eq!(line_naming("gunicorn\n", "gunicorn"), Some("gunicorn"));
    }
}
