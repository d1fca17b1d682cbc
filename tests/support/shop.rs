//! The demo shop's versions: `examples/shop` plus an overlay from `tests/fixtures/django-versions/<name>`.
//!
//! An overlay may name a parent overlay in a `PARENT` file (the v3 releases build on v2); the chain is applied
//! base first.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The repository's root (where `examples/` and `tests/` live).
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `examples/shop`, the base of every version.
pub(crate) fn base_dir() -> PathBuf {
    repo_root().join("examples/shop")
}

/// The directory of one version's overlay.
pub(crate) fn overlay_dir(version: &str) -> PathBuf {
    repo_root().join("tests/fixtures/django-versions").join(version)
}

/// The versions the fixtures provide.
pub(crate) const VERSIONS: &[&str] = &[
    "v1",
    "v2",
    "v3-health-fails",
    "v3-health-fails-lane-2",
    "v3-breaks-after-cutover",
    "v3-flaky-pages",
    "v3-unsafe-migration",
    "v3-no-boot",
    "v3-same-inputs",
    "v3-static-change",
    "v3-contract",
    "v4-contract-fails",
];

/// Writes version `version` of the shop into `dest` (created; existing files are overwritten).
pub(crate) fn materialise(version: &str, dest: &Path) -> io::Result<()> {
    let mut chain = vec![overlay_dir(version)];
    loop {
        let parent_file = chain[chain.len() - 1].join("PARENT");
        if !parent_file.exists() {
            break;
        }
        let parent = fs::read_to_string(&parent_file)?;
        chain.push(overlay_dir(parent.trim()));
    }
    if !chain[0].is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("no Django version fixture {version}")));
    }
    fs::create_dir_all(dest)?;
    copy_tree(&base_dir(), dest)?;
    for overlay in chain.iter().rev() {
        copy_tree(overlay, dest)?;
    }
    Ok(())
}

/// Copies `from` into `to` recursively, skipping overlay metadata and local build leftovers.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if matches!(name_str.as_ref(), "PARENT" | "README.md" | "__pycache__" | "staticfiles" | "db.sqlite3") {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The version string a materialised shop reports (its `shop/version.py`).
pub(crate) fn version_of(shop_dir: &Path) -> io::Result<String> {
    let text = fs::read_to_string(shop_dir.join("shop/version.py"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("VERSION = "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VERSION in shop/version.py"))
}
