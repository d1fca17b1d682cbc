//! Environment files (`KEY=VALUE` lines, as systemd's `EnvironmentFile=` reads them): parsed here, and every
//! value handed to the run's redactor so a secret read from the file is never printed.

use std::collections::BTreeMap;
use std::path::Path;

use zdd_engine::host::Host;
use zdd_engine::kind::StepError;
use zdd_engine::redact::Redactor;

/// Parse `KEY=VALUE` lines: blank lines and `#` comments skipped, an optional `export ` prefix, values optionally
/// wrapped in single or double quotes. Lines without `=` are errors (their line number, never their text).
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {} is not KEY=VALUE", i + 1));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("line {} has an invalid variable name", i + 1));
        }
        let value = value.trim();
        let unquoted =
            ['"', '\''].iter().find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q))).unwrap_or(value);
        vars.insert(key.to_owned(), unquoted.to_owned());
    }
    Ok(vars)
}

/// Read and parse an env file on the host, registering every value as a secret.
pub async fn load(
    host: &dyn Host,
    path: &Path,
    redactor: Option<&Redactor>,
) -> Result<BTreeMap<String, String>, StepError> {
    Ok(read(host, path, redactor).await?.1)
}

/// Read and parse an env file on the host, registering every value as a secret: its bytes (what a release's
/// snapshot copies, so systemd reads the same text) and its variables.
pub async fn read(
    host: &dyn Host,
    path: &Path,
    redactor: Option<&Redactor>,
) -> Result<(Vec<u8>, BTreeMap<String, String>), StepError> {
    let bytes = host
        .read_file(path)
        .await?
        .ok_or_else(|| StepError::fatal(format!("env file {} does not exist", path.display())))?;
    let vars = parse(&String::from_utf8_lossy(&bytes))
        .map_err(|e| StepError::fatal(format!("env file {}: {e}", path.display())))?;
    if let Some(r) = redactor {
        for v in vars.values() {
            r.add(v.clone());
        }
    }
    Ok((bytes, vars))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_exports_and_quotes() {
        let vars = parse("# c\n\nexport A=1\nB = \"two words\"\nC='x=y'\n").unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "x=y");
    }

    #[test]
    fn errors_name_the_line_not_the_value() {
        let err = parse("A=1\nsupersecret\n").unwrap_err();
        assert_eq!(err, "line 2 is not KEY=VALUE");
    }
}
