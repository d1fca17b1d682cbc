//! The ways an operator installs zdd, tested as built: `scripts/package.sh` makes the static (musl) binary and
//! the Debian package of it (cargo-deb). The package is installed with `dpkg -i` on this machine and removed
//! again; the static binary runs in a root directory that holds nothing but itself and a plan, so no shared
//! library, loader or toolchain can be what makes it work.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::env::{Requirement, TestDir, require};

/// The static binary and the .deb, built once per test binary (a release build: a few minutes the first time).
struct Built {
    binary: PathBuf,
    deb: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let stdout = run(Command::new("bash").arg(repo.join("scripts/package.sh")));
        let mut lines = stdout.lines().rev();
        let deb = PathBuf::from(lines.next().unwrap_or_default().trim());
        let binary = PathBuf::from(lines.next().unwrap_or_default().trim());
        assert!(binary.is_file() && deb.is_file(), "scripts/package.sh printed no binary and .deb:\n{stdout}");
        Built { binary, deb }
    })
}

/// Runs a command and panics with its output unless it succeeds; its stdout.
fn run(cmd: &mut Command) -> String {
    crate::support::proc::run(&format!("{cmd:?}"), cmd)
}

/// Removes the package when the test ends, passed or not, so the machine is left as it was found.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "zdd"]).output();
    }
}

#[test]
fn the_debian_package_installs_the_binary_man_page_completions_and_example_plans() {
    if !require("packaging", &[Requirement::Root, Requirement::Packaging]) {
        return;
    }
    let _serial = crate::support::scenarios::serial();
    // A zdd on the PATH that no package owns is someone's own install: never overwrite or remove it.
    if Path::new("/usr/bin/zdd").exists() {
        let owned = Command::new("dpkg").args(["-S", "/usr/bin/zdd"]).output().is_ok_and(|o| o.status.success());
        assert!(owned, "/usr/bin/zdd exists and no package owns it: move it away to run this test");
    }
    let built = built();
    let _installed = Installed;
    run(Command::new("dpkg").arg("-i").arg(&built.deb));

    let version = run(Command::new("/usr/bin/zdd").arg("--version"));
    assert_eq!(version.trim(), format!("zdd {}", env!("CARGO_PKG_VERSION")));

    let files = run(Command::new("dpkg").args(["-L", "zdd"]));
    for path in [
        "/usr/bin/zdd",
        "/usr/share/man/man1/zdd.1.gz",
        "/usr/share/bash-completion/completions/zdd",
        "/usr/share/zsh/vendor-completions/_zdd",
        "/usr/share/fish/vendor_completions.d/zdd.fish",
        "/usr/share/doc/zdd/examples/prod.kdl",
        "/usr/share/doc/zdd/examples/fragments/django.kdl",
        "/usr/share/doc/zdd/copyright",
    ] {
        assert!(files.lines().any(|l| l == path), "the package does not install {path}:\n{files}");
        assert!(Path::new(path).exists(), "{path} is listed but not on disk");
    }
    // Every plan the book ships is an example that checks as installed (includes resolved beside it), from a
    // directory that is not the checkout.
    let elsewhere = TestDir::new("packaging-cwd");
    let examples = std::fs::read_dir("/usr/share/doc/zdd/examples").expect("examples dir");
    let mut checked = 0;
    for entry in examples.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "kdl") {
            run(Command::new("/usr/bin/zdd").arg("check").arg(&path).current_dir(elsewhere.path()));
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} example plans were installed");

    let status = run(Command::new("dpkg-query").args(["-W", "-f", "${Status} ${Depends}", "zdd"]));
    assert_eq!(status.trim(), "install ok installed", "a static binary depends on no package");
}

#[test]
fn the_static_binary_runs_in_an_empty_root() {
    if !require("packaging", &[Requirement::Root, Requirement::Packaging]) {
        return;
    }
    let _serial = crate::support::scenarios::serial();
    let built = built();
    let dir = TestDir::new("static-root");
    let root = dir.path().join("root");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(root.join("plans/fragments")).expect("mkdir");
    std::fs::copy(&built.binary, root.join("zdd")).expect("copy binary");
    for plan in ["prod.kdl", "fragments/django.kdl", "fragments/django-release.kdl"] {
        std::fs::copy(repo.join("plans").join(plan), root.join("plans").join(plan)).expect("copy plan");
    }
    // No /lib, no loader, no /proc, no /tmp: a dynamically linked binary fails here before main.
    let version = run(Command::new("chroot").arg(&root).arg("/zdd").arg("--version"));
    assert_eq!(version.trim(), format!("zdd {}", env!("CARGO_PKG_VERSION")));
    let check = run(Command::new("chroot").arg(&root).args(["/zdd", "check", "/plans/prod.kdl"]));
    assert!(check.contains("is valid"), "zdd check in the empty root said:\n{check}");
}
