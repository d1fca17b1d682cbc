//! The book and the `Code` enum list the same diagnostic codes: every code has a row in a code table of the
//! plan-language or troubleshooting chapter (what `zdd explain` prints), and every code a row names is a code.

use std::collections::BTreeSet;
use std::path::Path;

use zdd_engine::diag::Code;

const CHAPTERS: &[&str] = &["book/src/plan-language.md", "book/src/troubleshooting.md"];

/// The `zdd::...` codes in the first cell of the chapters' table rows.
fn codes_in_book_tables() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = BTreeSet::new();
    for chapter in CHAPTERS {
        let text = std::fs::read_to_string(root.join(chapter)).expect("chapter");
        for line in text.lines() {
            let Some(first_cell) = line.strip_prefix('|').and_then(|row| row.split(" | ").next()) else { continue };
            for code in first_cell.split('`').skip(1).step_by(2).filter(|c| c.starts_with("zdd::")) {
                found.insert(code.to_owned());
            }
        }
    }
    found
}

#[test]
fn every_code_has_a_book_entry_and_every_book_entry_is_a_code() {
    let book = codes_in_book_tables();
    let missing: Vec<Code> = Code::all().filter(|c| !book.contains(c.as_str())).collect();
    assert!(missing.is_empty(), "codes without a row in a code table of {CHAPTERS:?}: {missing:?}");
    let unknown: Vec<&String> = book.iter().filter(|c| c.parse::<Code>().is_err()).collect();
    assert!(unknown.is_empty(), "book rows naming no `Code` (engine/src/diag/code.rs): {unknown:?}");
}
