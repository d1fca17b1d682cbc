//! The on-disk format of a state directory, and which formats this zdd reads.
//!
//! `state.json`, each journal's header line and the lock are JSON objects that carry `format` (an integer) and
//! `written_by` (`zdd 0.1.0`) at their top level. Files written before formats were numbered have neither: they
//! are format 1, and read as they always were. This zdd reads every format in [`READS`] and writes [`CURRENT`];
//! a file of a newer format is refused ([`NewerFormat`]), never read with this zdd's idea of its fields.
//!
//! The one promise every format keeps, so that any zdd can tell a newer file from a broken one: the file (or a
//! journal's first line) is a JSON object with an integer `format` at its top level.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ZDD_VERSION;
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::source::{SourceMap, Span};

/// The format this zdd writes. Format 2 added the stamp itself; the fields of format 1 are unchanged.
pub const CURRENT: u32 = 2;

/// The formats this zdd reads: its own and the previous release's.
pub const READS: RangeInclusive<u32> = 1..=CURRENT;

/// The format of a file that names none: what zdd wrote before formats were numbered.
const UNNUMBERED: u32 = 1;

/// Who writes this zdd's files, as `written_by` says it.
pub const WRITTEN_BY: &str = concat!("zdd ", env!("CARGO_PKG_VERSION"));

/// The format fields of a file, read before anything else in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    #[serde(default = "unnumbered")]
    pub format: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
}

fn unnumbered() -> u32 {
    UNNUMBERED
}

impl Stamp {
    /// What this zdd writes.
    pub fn current() -> Self {
        Self { format: CURRENT, written_by: Some(WRITTEN_BY.to_owned()) }
    }

    /// The stamp of a file's JSON text, other fields ignored; `None` when the text is no JSON object (an empty
    /// lock, a cut line: what reads the file says what is wrong with it).
    pub fn of(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// Refuse a format this zdd does not read. `text` is the file's, to point at its `format`.
    pub fn check(&self, path: &Path, text: &str) -> Result<(), NewerFormat> {
        if READS.contains(&self.format) {
            return Ok(());
        }
        Err(NewerFormat {
            path: path.to_path_buf(),
            format: self.format,
            written_by: self.written_by.clone(),
            text: text.to_owned(),
        })
    }
}

/// A value with the [`Stamp`] of this zdd in front of its own fields, as every state file is written.
#[derive(Debug, Serialize)]
pub struct Stamped<'a, T> {
    #[serde(flatten)]
    pub stamp: Stamp,
    #[serde(flatten)]
    pub value: &'a T,
}

impl<'a, T: Serialize> Stamped<'a, T> {
    pub fn current(value: &'a T) -> Self {
        Self { stamp: Stamp::current(), value }
    }
}

/// A file of a format this zdd does not read: written by a newer zdd (formats only grow).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is in state format {format}, written by {}; this zdd ({ZDD_VERSION}) reads formats {} to {}",
    path.display(),
    self.writer(),
    READS.start(),
    READS.end()
)]
pub struct NewerFormat {
    pub path: PathBuf,
    pub format: u32,
    pub written_by: Option<String>,
    /// The file's text (a journal's first line), shown under the diagnostic.
    text: String,
}

impl NewerFormat {
    fn writer(&self) -> &str {
        self.written_by.as_deref().unwrap_or("a newer zdd")
    }

    /// The diagnostic (`zdd::state-format-newer`), pointing at the file's `format`, and the file as its source.
    pub fn diagnostic(&self) -> (Diagnostics, SourceMap) {
        let mut sources = SourceMap::new();
        let file = sources.add(self.path.display().to_string(), &self.path, self.text.as_str());
        let (offset, len) = format_field(&self.text).unwrap_or((0, 0));
        let mut diags = Diagnostics::new();
        diags.push(
            Diagnostic::error(Code::StateFormatNewer, self.to_string())
                .at(Span::new(file, offset, len), format!("format {}", self.format))
                .help(format!(
                    "this state directory was written by {}: upgrade zdd to that version or later (the files were \
                     left as they are)",
                    self.writer()
                )),
        );
        (diags, sources)
    }
}

/// Where `"format": N` is in a JSON object's text: the key, its colon and its value.
pub(crate) fn format_field(text: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(found) = text[from..].find("\"format\"") {
        let start = from + found;
        let after_key = start + "\"format\"".len();
        let rest = &text[after_key..];
        let colon = rest.len() - rest.trim_start().len();
        if rest[colon..].starts_with(':') {
            let value = &rest[colon + 1..];
            let space = value.len() - value.trim_start().len();
            let digits = value[space..].chars().take_while(char::is_ascii_digit).count();
            return Some((start, after_key + colon + 1 + space + digits - start));
        }
        from = after_key;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_format_is_format_1_and_read() {
        let stamp = Stamp::of(r#"{"live": null}"#).unwrap();
        assert_eq!(stamp, Stamp { format: 1, written_by: None });
        assert_eq!(stamp.check(Path::new("state.json"), ""), Ok(()));
        assert_eq!(Stamp::of(""), None, "an empty lock has no stamp to check");
    }

    #[test]
    fn this_zdds_stamp_comes_first_and_reads_back() {
        let text = serde_json::to_string(&Stamped::current(&serde_json::json!({"live": null}))).unwrap();
        assert_eq!(text, format!(r#"{{"format":{CURRENT},"written_by":"{WRITTEN_BY}","live":null}}"#));
        assert_eq!(Stamp::of(&text), Some(Stamp::current()));
    }

    #[test]
    fn a_newer_format_is_refused_pointing_at_its_format() {
        let text = "{\n  \"release\": \"format\",\n  \"format\" : 9,\n  \"written_by\": \"zdd 7.0.0\"\n}\n";
        let err = Stamp::of(text).unwrap().check(Path::new("/s/state.json"), text).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "/s/state.json is in state format 9, written by zdd 7.0.0; this zdd ({ZDD_VERSION}) reads formats 1 \
                 to {CURRENT}"
            )
        );
        let (offset, len) = format_field(text).unwrap();
        assert_eq!(&text[offset..offset + len], "\"format\" : 9");
        let (diags, sources) = err.diagnostic();
        let rendered = diags.render(&sources, false);
        assert!(rendered.contains("zdd::state-format-newer"), "{rendered}");
        assert!(rendered.contains("written by zdd 7.0.0: upgrade zdd"), "{rendered}");
        assert!(rendered.contains("/s/state.json:3:3"), "{rendered}");
    }
}
