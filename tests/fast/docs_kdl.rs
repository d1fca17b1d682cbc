//! Every plan the project shows must pass `zdd check` with the built-in kinds:
//! - every `` ```kdl `` block in `book/**/*.md` (blocks tagged `must-fail` must be rejected);
//! - every `.kdl` file in `plans/` (fragments under `plans/fragments/` through the plans that include them, or
//!   standalone when no plan includes them).
//!
//! Book convention (documented in the plan-language chapter): a block is checked as if it were a file in
//! `plans/`, so `include "fragments/x.kdl"` finds the shipped fragments; a block tagged `file=<path>` is not
//! checked alone but written at that path for the blocks after it in the same chapter; a variable declared
//! without a default is given the value `sample-value` with `--var`.

use crate::book;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use book::{files_with_extension, kdl_blocks, markdown_files};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `--var name=sample-value` for each variable of `text` declared without a default.
fn sample_vars(text: &str) -> Vec<String> {
    let (doc, _) = zdd_engine::plan::raw::parse(zdd_engine::source::FileId(0), text);
    doc.items
        .iter()
        .filter_map(|item| match item {
            zdd_engine::plan::raw::RawItem::Var(n) if n.args.len() == 1 => {
                n.args[0].value.text().map(|name| format!("{name}=sample-value"))
            }
            _ => None,
        })
        .collect()
}

/// Run `zdd check` on `plan`; returns (success, stderr).
fn check(plan: &Path, text: &str) -> (bool, String) {
    let mut cmd = Command::cargo_bin("zdd").unwrap();
    cmd.arg("check").arg(plan);
    for v in sample_vars(text) {
        cmd.arg("--var").arg(v);
    }
    let out = cmd.env_remove("NO_COLOR").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn copy_tree(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    std::fs::create_dir_all(to).unwrap();
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(e.file_name()));
        } else {
            std::fs::copy(&path, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn every_kdl_block_in_the_book_passes_zdd_check() {
    let mut chapters = Vec::new();
    markdown_files(&root().join("book"), &mut chapters);
    let mut failures = Vec::new();
    let mut checked = 0;
    for chapter in &chapters {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&root().join("plans"), dir.path());
        for block in kdl_blocks(chapter) {
            let place =
                format!("{}:{}", block.chapter.strip_prefix(root()).unwrap_or(&block.chapter).display(), block.line);
            if let Some(file) = block.file() {
                let path = dir.path().join(file);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &block.text).unwrap();
                continue;
            }
            let path = dir.path().join("book-example.kdl");
            std::fs::write(&path, &block.text).unwrap();
            let (ok, stderr) = check(&path, &block.text);
            checked += 1;
            match (ok, block.must_fail()) {
                (true, false) | (false, true) => {}
                (false, false) => failures.push(format!("{place}: rejected by `zdd check`:\n{stderr}")),
                (true, true) => failures.push(format!("{place}: tagged must-fail but `zdd check` accepts it")),
            }
        }
    }
    println!("checked {checked} kdl blocks in {} chapters", chapters.len());
    assert!(checked > 0, "no ```kdl block found under book/");
    assert!(failures.is_empty(), "{} book example(s) failed:\n\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_shipped_plan_passes_zdd_check() {
    let plans = root().join("plans");
    let Ok(entries) = std::fs::read_dir(&plans) else {
        println!("no plans/ directory: nothing to check");
        return;
    };
    let mut mains: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "kdl"))
        .collect();
    mains.sort();
    let mut failures = Vec::new();
    let mut included = Vec::new();
    for plan in &mains {
        let text = std::fs::read_to_string(plan).unwrap();
        let (ok, stderr) = check(plan, &text);
        if !ok {
            failures.push(format!("{}:\n{stderr}", plan.display()));
        }
        // Every file this plan reads, includes of includes too.
        let (loaded, _) = zdd_engine::plan::load::load(plan, &zdd_engine::plan::load::FsReader);
        included.extend(loaded.sources.files().map(|(_, f)| f.path.clone()));
    }
    // Fragments no plan includes are checked on their own.
    let mut fragments = Vec::new();
    files_with_extension(&plans.join("fragments"), "kdl", &mut fragments);
    for fragment in fragments.iter().filter(|f| !included.contains(&zdd_engine::plan::load::normalize(f))) {
        let text = std::fs::read_to_string(fragment).unwrap();
        let (ok, stderr) = check(fragment, &text);
        if !ok {
            failures.push(format!("{} (not included by any plan, checked alone):\n{stderr}", fragment.display()));
        }
    }
    println!("checked {} plans and {} fragments", mains.len(), fragments.len());
    assert!(failures.is_empty(), "{} shipped plan(s) failed:\n\n{}", failures.len(), failures.join("\n"));
}
