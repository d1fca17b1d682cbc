//! A tar stream of some of a source tree's files, written while it is read: how a release reaches an SSH host
//! (unpacked there by `tar -x` reading its stdin, [`Host::run_streaming`](zdd_engine::host::Host::run_streaming)).
//!
//! The archive is never whole in memory: a blocking task writes it into a pipe of [`PIPE`] bytes that the reader
//! empties, so what is held at once is that pipe, the tar writer's copy buffer and the reader's chunk, whatever
//! the size of the tree. Files keep their mode and modification time, symlinks stay symlinks (never followed),
//! and the folders on the way to a file keep their mode too; owners are left to the unpacking side.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tokio::task::JoinHandle;
use tokio_util::io::SyncIoBridge;
use zdd_engine::host::InputStream;

/// The pipe between the writing task and the reader.
const PIPE: usize = 64 * 1024;

/// An archive being written: read `stream`, then ask `written` whether all of it was.
pub(crate) struct Archive {
    pub stream: InputStream,
    /// How many entries were archived, or why the archive is incomplete. A reader that stops early makes
    /// this fail with a broken pipe.
    pub written: JoinHandle<std::io::Result<usize>>,
}

/// Archive `files` (relative to `source`, as a NUL-separated list prints them) under their relative names.
/// A directory in the list (a git submodule) is archived with everything in it.
pub(crate) fn stream(source: PathBuf, files: Vec<PathBuf>) -> Archive {
    let (reader, writer) = tokio::io::duplex(PIPE);
    let writer = SyncIoBridge::new(writer);
    let written = tokio::task::spawn_blocking(move || write(&source, &files, writer));
    Archive { stream: Box::new(reader), written }
}

fn write(source: &Path, files: &[PathBuf], writer: impl std::io::Write) -> std::io::Result<usize> {
    let mut tar = tar::Builder::new(writer);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    let mut folders = BTreeSet::new();
    for file in files {
        // The folders on the way first, each once, so that they keep their modes.
        let mut on_the_way = PathBuf::new();
        for component in file.parent().into_iter().flat_map(Path::components) {
            on_the_way.push(component);
            if folders.insert(on_the_way.clone()) {
                tar.append_dir(&on_the_way, source.join(&on_the_way)).map_err(|e| at(&on_the_way, &e))?;
            }
        }
        let path = source.join(file);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| at(file, &e))?;
        if meta.is_dir() {
            tar.append_dir_all(file, &path).map_err(|e| at(file, &e))?;
        } else {
            tar.append_path_with_name(&path, file).map_err(|e| at(file, &e))?;
        }
    }
    tar.into_inner()?.flush()?;
    Ok(files.len())
}

fn at(path: &Path, e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("archive {}: {e}", path.display()))
}

/// The relative paths of a NUL-separated list (what `git ls-files -z` and `find -print0` print).
pub(crate) fn paths(list: &[u8]) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    list.split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let path = Path::new(std::ffi::OsStr::from_bytes(p));
            path.strip_prefix("./").unwrap_or(path).to_path_buf()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use tokio::io::AsyncReadExt as _;

    use super::*;

    #[test]
    fn lists_split_at_nuls_without_a_leading_dot() {
        assert_eq!(paths(b"./a/b.py\0c\0\0"), vec![PathBuf::from("a/b.py"), PathBuf::from("c")]);
    }

    #[tokio::test]
    async fn files_links_and_modes_survive_a_round_trip() {
        let source = tempfile::tempdir().unwrap();
        let root = source.path();
        std::fs::create_dir_all(root.join("app/bin")).unwrap();
        std::fs::write(root.join("app/bin/run"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("app/bin/run"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::set_permissions(root.join("app/bin"), std::fs::Permissions::from_mode(0o710)).unwrap();
        std::os::unix::fs::symlink("bin/run", root.join("app/run")).unwrap();
        std::fs::write(root.join("skipped"), "not listed").unwrap();
        let mut archive = stream(root.to_path_buf(), paths(b"app/bin/run\0app/run\0"));
        let mut bytes = Vec::new();
        archive.stream.read_to_end(&mut bytes).await.unwrap();
        assert_eq!(archive.written.await.unwrap().unwrap(), 2);

        let mut entries: Vec<(String, u32, Option<PathBuf>)> = tar::Archive::new(bytes.as_slice())
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let header = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    header.mode().unwrap() & 0o7777,
                    e.link_name().unwrap().map(std::borrow::Cow::into_owned),
                )
            })
            .collect();
        entries.sort();
        assert_eq!(
            entries,
            vec![
                ("app".into(), std::fs::metadata(root.join("app")).unwrap().permissions().mode() & 0o7777, None),
                ("app/bin".into(), 0o710, None),
                ("app/bin/run".into(), 0o750, None),
                ("app/run".into(), 0o777, Some(PathBuf::from("bin/run"))),
            ]
        );
    }

    #[tokio::test]
    async fn a_missing_file_fails_the_archive() {
        let source = tempfile::tempdir().unwrap();
        let mut archive = stream(source.path().to_path_buf(), paths(b"gone.py\0"));
        let mut bytes = Vec::new();
        archive.stream.read_to_end(&mut bytes).await.unwrap();
        let err = archive.written.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("gone.py"), "{err}");
    }
}
