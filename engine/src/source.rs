//! The plan's source files: their display names and text, and spans into them.
//!
//! Loading (the only I/O of plan reading) fills a [`SourceMap`]; everything after works on its text.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Index of a file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct FileId(pub u32);

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Span {
    pub file: FileId,
    pub offset: usize,
    pub len: usize,
}

impl Span {
    pub fn new(file: FileId, offset: usize, len: usize) -> Self {
        Self { file, offset, len }
    }
}

/// One loaded plan file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The name shown in diagnostics (the path as the user gave it, or relative to the main plan).
    pub name: String,
    /// The path the file was read from.
    pub path: PathBuf,
    pub text: Arc<str>,
}

/// All files of one plan: the main file first, then its includes in the order they were read.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, name: impl Into<String>, path: impl AsRef<Path>, text: impl Into<Arc<str>>) -> FileId {
        let id = FileId(u32::try_from(self.files.len()).unwrap_or(u32::MAX));
        self.files.push(SourceFile { name: name.into(), path: path.as_ref().to_path_buf(), text: text.into() });
        id
    }

    pub fn get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files.iter().zip(0..).map(|(f, i)| (FileId(i), f))
    }

    /// 1-based line and column (in characters) of a byte offset, for `file:line:col` output.
    pub fn line_col(&self, span: Span) -> (usize, usize) {
        let Some(file) = self.get(span.file) else { return (0, 0) };
        let upto = &file.text[..span.offset.min(file.text.len())];
        let line = upto.matches('\n').count() + 1;
        let col = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}
