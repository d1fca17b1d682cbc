//! Reading a plan file and its includes into a [`crate::source::SourceMap`] and parsed [`RawDocument`]s.
//!
//! The only I/O of plan reading, and only through a [`SourceReader`]: [`FsReader`] reads the disk,
//! [`MemoryReader`] serves tests and the book's examples. `include "x.kdl"` is resolved relative to the file
//! that contains it. Include cycles (`a.kdl -> b.kdl -> a.kdl`) and missing includes become diagnostics at the
//! `include` node.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::plan::raw::{self, RawDocument, RawItem, Scalar};
use crate::source::{FileId, SourceMap};

/// Where plan files come from.
pub trait SourceReader {
    fn read(&self, path: &Path) -> std::io::Result<String>;
}

/// Reads plan files from the file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsReader;

impl SourceReader for FsReader {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// Plan files held in memory, by path (tests, examples).
#[derive(Debug, Clone, Default)]
pub struct MemoryReader {
    pub files: BTreeMap<PathBuf, String>,
}

impl MemoryReader {
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        self.files.insert(normalize(&path.into()), text.into());
        self
    }
}

impl SourceReader for MemoryReader {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        self.files
            .get(&normalize(path))
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory"))
    }
}

/// Every file of a plan, parsed.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub sources: SourceMap,
    /// The parsed document of each file, indexed by [`FileId`] (the main file is `FileId(0)`).
    pub docs: Vec<RawDocument>,
    /// Which file each `include` item loaded: `(including file, index of the item) -> included file`.
    pub includes: BTreeMap<(FileId, usize), FileId>,
}

impl Loaded {
    pub fn doc(&self, file: FileId) -> &RawDocument {
        &self.docs[file.0 as usize]
    }
}

/// Read `main` and everything it includes. Problems (unreadable files, KDL errors, cycles) are collected.
pub fn load(main: &Path, reader: &dyn SourceReader) -> (Loaded, Diagnostics) {
    let mut loader = Loader { reader, loaded: Loaded::default(), diags: Diagnostics::new() };
    let main_path = normalize(main);
    match reader.read(&main_path) {
        Ok(text) => {
            let name = main.display().to_string();
            let file = loader.add(name, &main_path, text);
            loader.follow_includes(file, &mut vec![file]);
        }
        Err(e) => loader.diags.push(
            Diagnostic::error(Code::PlanNotFound, format!("cannot read the plan `{}`: {e}", main.display()))
                .help("give the path of a plan file (KDL), e.g. `deploy/prod.kdl`"),
        ),
    }
    (loader.loaded, loader.diags)
}

struct Loader<'a> {
    reader: &'a dyn SourceReader,
    loaded: Loaded,
    diags: Diagnostics,
}

impl Loader<'_> {
    fn add(&mut self, name: String, path: &Path, text: String) -> FileId {
        let file = self.loaded.sources.add(name, path, text);
        let text = self.loaded.sources.get(file).map(|f| f.text.clone()).unwrap_or_default();
        let (doc, diags) = raw::parse(file, &text);
        self.loaded.docs.push(doc);
        self.diags.extend(diags);
        file
    }

    /// Load the includes of `file`; `chain` is the include path from the main file down to `file`.
    fn follow_includes(&mut self, file: FileId, chain: &mut Vec<FileId>) {
        let includes: Vec<(usize, raw::RawNode)> = self
            .loaded
            .doc(file)
            .items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                RawItem::Include(node) => Some((i, node.clone())),
                _ => None,
            })
            .collect();
        for (index, node) in includes {
            let Some(arg) = node.args.first() else {
                self.diags.push(
                    Diagnostic::error(Code::MissingArgument, "`include` needs the path of a file")
                        .at(node.name_span, "no path")
                        .help("write `include \"fragments/django.kdl\"` (relative to this file)"),
                );
                continue;
            };
            let Scalar::Str(rel) = &arg.value else {
                self.diags.push(
                    Diagnostic::error(Code::WrongType, format!("`include` takes a path, not {}", arg.value.describe()))
                        .at(arg.span, "not a string")
                        .help("write the path in double quotes"),
                );
                continue;
            };
            if node.args.len() > 1 || !node.props.is_empty() || node.has_block {
                self.diags.push(
                    Diagnostic::error(Code::ExtraArgument, "`include` takes exactly one path")
                        .at(node.span, "only one path here")
                        .help("write one `include` per file"),
                );
            }
            let Some((including_path, including_name)) =
                self.loaded.sources.get(file).map(|f| (f.path.clone(), f.name.clone()))
            else {
                continue;
            };
            let dir = including_path.parent().map(Path::to_path_buf).unwrap_or_default();
            let path = normalize(&dir.join(rel));
            let name = display_name(&including_name, rel);
            if let Some(pos) = chain.iter().position(|f| self.loaded.sources.get(*f).is_some_and(|s| s.path == path)) {
                let mut names: Vec<String> =
                    chain[pos..].iter().filter_map(|f| self.loaded.sources.get(*f).map(|s| s.name.clone())).collect();
                names.push(name.clone());
                self.diags.push(
                    Diagnostic::error(Code::IncludeCycle, format!("include cycle: {}", names.join(" -> ")))
                        .at(arg.span, "includes a file that includes this one")
                        .help("remove one of these includes; a file cannot include itself, directly or not"),
                );
                continue;
            }
            match self.reader.read(&path) {
                Ok(text) => {
                    let child = self.add(name, &path, text);
                    self.loaded.includes.insert((file, index), child);
                    chain.push(child);
                    self.follow_includes(child, chain);
                    chain.pop();
                }
                Err(e) => self.diags.push(
                    Diagnostic::error(Code::IncludeNotFound, format!("cannot read included file `{rel}`: {e}"))
                        .at(arg.span, "included here")
                        .help(format!(
                            "the path is relative to the including file's directory, so this reads `{}`",
                            path.display()
                        )),
                ),
            }
        }
    }
}

/// The name an included file is shown with: its path as seen from the main plan's display name.
fn display_name(including_name: &str, rel: &str) -> String {
    if Path::new(rel).is_absolute() {
        return rel.to_owned();
    }
    let dir = Path::new(including_name).parent().map(Path::to_path_buf).unwrap_or_default();
    normalize(&dir.join(rel)).display().to_string()
}

/// `a/./b/../c` to `a/c`, without touching the file system (paths may not exist yet).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(d: &Diagnostics) -> Vec<Code> {
        d.iter().map(|d| d.code).collect()
    }

    #[test]
    fn loads_includes_relative_to_the_including_file() {
        let reader = MemoryReader::new()
            .with("deploy/prod.kdl", "plan \"x\"\ninclude \"frag/a.kdl\"\n")
            .with("deploy/frag/a.kdl", "include \"b.kdl\"\n")
            .with("deploy/frag/b.kdl", "var \"v\" \"1\"\n");
        let (loaded, diags) = load(Path::new("deploy/prod.kdl"), &reader);
        assert!(diags.is_empty(), "{diags:?}");
        let names: Vec<_> = loaded.sources.files().map(|(_, f)| f.name.clone()).collect();
        assert_eq!(names, ["deploy/prod.kdl", "deploy/frag/a.kdl", "deploy/frag/b.kdl"]);
        assert_eq!(loaded.includes[&(FileId(0), 1)], FileId(1));
        assert_eq!(loaded.includes[&(FileId(1), 0)], FileId(2));
    }

    #[test]
    fn include_cycle_names_the_chain() {
        let reader =
            MemoryReader::new().with("a.kdl", "plan \"x\"\ninclude \"b.kdl\"\n").with("b.kdl", "include \"a.kdl\"\n");
        let (_, diags) = load(Path::new("a.kdl"), &reader);
        assert_eq!(codes(&diags), [Code::IncludeCycle]);
        assert_eq!(diags.iter().next().unwrap().message, "include cycle: a.kdl -> b.kdl -> a.kdl");
    }

    #[test]
    fn missing_include_points_at_the_include() {
        let reader = MemoryReader::new().with("a.kdl", "plan \"x\"\ninclude \"nope.kdl\"\n");
        let (_, diags) = load(Path::new("a.kdl"), &reader);
        assert_eq!(codes(&diags), [Code::IncludeNotFound]);
        assert!(diags.iter().next().unwrap().span.is_some());
    }
}
