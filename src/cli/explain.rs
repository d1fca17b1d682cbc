//! `zdd explain CODE` and `zdd explain --list`: the book's entry for a diagnostic code, from the book's pages
//! embedded at build time, so the explanation is the one the book prints and never drifts from it.
//!
//! An entry is a row of a code table: its codes in the first cell (a row may name several), then what they mean
//! and the fix, under the table's column headers.

use std::fmt::Write as _;

use zdd_engine::diag::Code;
use zdd_engine::plan::suggest::did_you_mean;

use super::exit;

/// The book's pages that hold code tables: (where the entry is, the page's text).
const PAGES: &[(&str, &str)] = &[
    ("book/src/plan-language.md", include_str!("../../book/src/plan-language.md")),
    ("book/src/troubleshooting.md", include_str!("../../book/src/troubleshooting.md")),
];

/// `--list` cuts a summary to this many characters, so each code takes one line.
const SUMMARY_WIDTH: usize = 80;

/// Text is wrapped to this width (plain text; the book's markdown is kept as is).
const WIDTH: usize = 100;

pub(super) fn run(code: Option<&str>, list: bool) -> i32 {
    if list {
        out!("{}", list_all());
        return exit::OK;
    }
    let text = code.unwrap_or_default();
    match explain(text) {
        Ok(entry) => {
            out!("{entry}");
            exit::OK
        }
        Err(message) => {
            eprintln!("zdd: {message}");
            exit::INVALID
        }
    }
}

/// One row of a code table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// The codes in the row's first cell (`zdd::bad-port`, ...).
    pub codes: Vec<String>,
    /// The other cells, each with its column's header (`meaning`, `fix`).
    pub cells: Vec<(String, String)>,
    /// Page and section the row is in.
    pub place: String,
}

/// Every code-table row of the book's pages, in page order.
pub(super) fn entries() -> Vec<Entry> {
    let mut found = Vec::new();
    for (path, text) in PAGES {
        let mut section = "";
        let mut headers: Vec<String> = Vec::new();
        for line in text.lines() {
            if let Some(title) = line.strip_prefix("## ") {
                section = title.trim();
            } else if let Some(row) = line.strip_prefix('|') {
                let cells: Vec<String> = row.trim_end_matches('|').split(" | ").map(|c| c.trim().to_owned()).collect();
                let codes = codes_in(&cells[0]);
                if codes.is_empty() {
                    // A header row (or its `|---|` line): the next rows' column names.
                    if !cells[0].starts_with('-') {
                        headers = cells;
                    }
                    continue;
                }
                let named = headers.iter().skip(1).cloned().zip(cells.into_iter().skip(1)).collect();
                found.push(Entry { codes, cells: named, place: format!("{path}, section \"{section}\"") });
            } else {
                headers.clear();
            }
        }
    }
    found
}

/// The `zdd::...` codes written in backticks in a table cell.
fn codes_in(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).filter(|c| c.starts_with("zdd::")).map(str::to_owned).collect()
}

/// The book's entry for `text` (`zdd::unknown-step` or `unknown-step`), or why there is none.
pub(super) fn explain(text: &str) -> Result<String, String> {
    let code: Code = text.trim().parse().map_err(|_| unknown(text))?;
    let entry = entries()
        .into_iter()
        .find(|e| e.codes.iter().any(|c| c == code.as_str()))
        .ok_or_else(|| format!("`{code}` has no entry in the book (a bug: tests/docs_codes.rs checks this)"))?;
    let mut out = format!("{code}\n\n");
    let width = entry.cells.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
    for (header, cell) in &entry.cells {
        let indent = width + 4;
        let _ = writeln!(out, "  {header:width$}  {}", wrap(cell, WIDTH - indent, indent));
    }
    let others: Vec<&str> = entry.codes.iter().map(String::as_str).filter(|c| *c != code.as_str()).collect();
    if !others.is_empty() {
        let _ = writeln!(out, "\n  {}", wrap(&format!("The same entry covers {}.", others.join(", ")), WIDTH - 2, 2));
    }
    let _ = writeln!(out, "\nFrom the book: {}.", entry.place);
    Ok(out)
}

fn unknown(text: &str) -> String {
    let name = text.trim().strip_prefix("zdd::").unwrap_or(text.trim());
    let hint = did_you_mean(name, Code::all().map(Code::name))
        .map_or_else(String::new, |near| format!(" (did you mean `zdd::{near}`?)"));
    format!("`{text}` is not a diagnostic code{hint}; `zdd explain --list` lists them all")
}

/// Every code, one a line, with the first cell of its entry cut to a summary.
fn list_all() -> String {
    let entries = entries();
    let width = Code::all().map(|c| c.as_str().len()).max().unwrap_or(0);
    let mut out = String::new();
    for code in Code::all() {
        let summary = entries
            .iter()
            .find(|e| e.codes.iter().any(|c| c == code.as_str()))
            .and_then(|e| e.cells.first())
            .map_or("(no entry in the book)", |(_, text)| text.as_str());
        let _ = writeln!(out, "{:width$}  {}", code.as_str(), cut(summary, SUMMARY_WIDTH));
    }
    out
}

/// `text` cut at a word boundary to at most `max` characters, with `...` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut kept = String::new();
    for word in text.split(' ') {
        if kept.chars().count() + word.chars().count() + 4 > max {
            break;
        }
        if !kept.is_empty() {
            kept.push(' ');
        }
        kept.push_str(word);
    }
    format!("{} ...", kept.trim_end_matches([',', ';', ':']))
}

/// `text` wrapped to lines of at most `width` characters, lines after the first indented by `indent`.
fn wrap(text: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in text.split(' ') {
        let len = word.chars().count();
        if line_len > 0 && line_len + 1 + len > width {
            let _ = write!(out, "\n{:indent$}", "");
            line_len = 0;
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_found_with_or_without_its_prefix() {
        assert_eq!(explain("unknown-step"), explain("zdd::unknown-step"));
        assert!(explain("unknown-step").unwrap().contains("names no step"));
    }

    #[test]
    fn a_row_of_several_codes_explains_each() {
        let text = explain("bad-port").unwrap();
        assert!(text.contains("does not fit its type") && text.contains("zdd::bad-duration"), "{text}");
    }

    #[test]
    fn a_misspelled_code_gets_a_suggestion() {
        assert!(explain("unknown-stpe").unwrap_err().contains("did you mean `zdd::unknown-step`?"));
    }

    #[test]
    fn wrapping_keeps_words_whole_and_indents() {
        assert_eq!(wrap("aa bb cc", 5, 2), "aa bb\n  cc");
        assert_eq!(cut("one two three four", 12), "one two ...");
    }
}
