//! Every diagnostic code the sources can emit is explained in the book (the plan-language chapter or
//! troubleshooting), so an error message's code always leads somewhere.

use std::collections::BTreeSet;
use std::path::Path;

fn codes_in(dir: &Path, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            codes_in(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source");
            for piece in text.split("\"zdd::").skip(1) {
                let code: String =
                    piece.chars().take_while(|c| c.is_ascii_lowercase() || *c == '-' || c.is_ascii_digit()).collect();
                if piece[code.len()..].starts_with('"') && !code.is_empty() {
                    found.insert(format!("zdd::{code}"));
                }
            }
        }
    }
}

#[test]
fn every_diagnostic_code_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut codes = BTreeSet::new();
    for dir in ["engine/src", "steps/src", "src"] {
        codes_in(&root.join(dir), &mut codes);
    }
    assert!(codes.len() > 20, "found only {codes:?}");
    let book: String = ["book/src/plan-language.md", "book/src/troubleshooting.md"]
        .iter()
        .map(|p| std::fs::read_to_string(root.join(p)).expect("chapter"))
        .collect();
    let missing: Vec<&String> = codes.iter().filter(|c| !book.contains(&format!("`{c}`"))).collect();
    assert!(missing.is_empty(), "codes not explained in the book: {missing:?}");
}
