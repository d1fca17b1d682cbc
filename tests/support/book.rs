//! The ```` ```kdl ```` blocks of the book (`book/src/**/*.md`) and the files of a tree, for the tests that check
//! the book's and `plans/`'s KDL (`docs_kdl.rs`) and keep them in the fuzz seeds (`fuzz_corpus.rs`). Included
//! with `#[path]`, not part of `support`.
// Each test binary that includes this file uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub(crate) struct Block {
    pub(crate) chapter: PathBuf,
    pub(crate) line: usize,
    pub(crate) info: Vec<String>,
    pub(crate) text: String,
}

impl Block {
    pub(crate) fn file(&self) -> Option<&str> {
        self.info.iter().find_map(|t| t.strip_prefix("file="))
    }

    pub(crate) fn must_fail(&self) -> bool {
        self.info.iter().any(|t| t == "must-fail")
    }
}

/// Every Markdown file under `dir`, sorted.
pub(crate) fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    files_with_extension(dir, "md", out);
}

/// Every file under `dir` whose name ends in `.<extension>`, sorted (a folder's files before the next folder's).
pub(crate) fn files_with_extension(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files_with_extension(&path, extension, out);
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
}

/// The ```` ```kdl ```` blocks of `chapter`, in order.
pub(crate) fn kdl_blocks(chapter: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(chapter).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut current {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let info: Vec<String> =
                        info.split([' ', ',']).filter(|t| !t.is_empty()).map(str::to_owned).collect();
                    if info.first().is_some_and(|t| t == "kdl") {
                        current =
                            Some(Block { chapter: chapter.to_path_buf(), line: i + 1, info, text: String::new() });
                    }
                }
            }
            Some(block) => {
                if trimmed.starts_with("```") {
                    blocks.extend(current.take());
                } else {
                    block.text.push_str(line);
                    block.text.push('\n');
                }
            }
        }
    }
    blocks
}
