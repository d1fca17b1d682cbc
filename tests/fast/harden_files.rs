//! Files and permissions: what zdd writes in its state directory is readable by its owner only (directory
//! 0700; state, journal, lock and process log 0600), whatever the umask; a state directory that others can
//! write, or that belongs to another user, is refused before anything runs; files are replaced atomically
//! with exactly the mode asked for.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use zdd_engine::host::local::write_atomically;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn plan(dir: &Path) -> PathBuf {
    let path = dir.join("plan.kdl");
    std::fs::write(
        &path,
        "plan \"files\"\nstep \"one\" kind=\"exec\" {\n    command \"true\"\n    undo-command \"true\"\n}\n",
    )
    .unwrap();
    path
}

fn run(plan: &Path, state: &Path) -> std::process::Output {
    Command::cargo_bin("zdd")
        .unwrap()
        .arg("run")
        .arg(plan)
        .arg("--state-dir")
        .arg(state)
        .arg("--plain")
        .env_remove("ZDD_STATE_DIR")
        .output()
        .unwrap()
}

#[test]
fn the_state_directory_is_private_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan(tmp.path());
    let state = tmp.path().join("state");
    // A permissive umask for the child: the modes must not depend on it.
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" run \"$1\" --state-dir \"$2\" --plain")
        .arg(assert_cmd::cargo::cargo_bin("zdd"))
        .arg(&plan)
        .arg(&state)
        .env_remove("ZDD_STATE_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&state), 0o700);
    let mut seen = Vec::new();
    for entry in walk(&state) {
        let m = mode(&entry);
        if entry.is_dir() {
            assert_eq!(m & 0o077, 0, "{} is {m:o}", entry.display());
        } else {
            assert_eq!(m, 0o600, "{} is {m:o}", entry.display());
        }
        seen.push(entry.file_name().unwrap().to_string_lossy().into_owned());
    }
    assert!(seen.iter().any(|n| n == "state.json"), "{seen:?}");
    assert!(seen.iter().any(|n| Path::new(n).extension().is_some_and(|e| e == "jsonl")), "{seen:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.clone());
        if path.is_dir() {
            out.extend(walk(&path));
        }
    }
    out
}

#[test]
fn a_state_directory_others_can_write_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan(tmp.path());
    for unsafe_mode in [0o777, 0o775, 0o757, 0o720, 0o702] {
        let state = tmp.path().join(format!("state-{unsafe_mode:o}"));
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(unsafe_mode)).unwrap();
        let out = run(&plan, &state);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{unsafe_mode:o}: {stderr}");
        assert!(stderr.contains("writable by group or others") && stderr.contains("chmod 700"), "{stderr}");
        assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0, "{unsafe_mode:o}: something was written");
    }
}

#[test]
fn a_state_directory_owned_by_another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI must run this test as root (it chowns a directory)");
        eprintln!("skipped: chown to another user needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan(tmp.path());
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let out = run(&plan, &state);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("belongs to user 65534"), "{stderr}");
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0, "something was written");
}

#[test]
fn files_are_replaced_atomically_with_exactly_their_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("shop.conf");
    std::fs::write(&file, "old").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let before = std::fs::metadata(&file).unwrap().ino();
    write_atomically(&file, b"new", 0o644).unwrap();
    // Replaced by a rename: a new inode, so a reader holding the old file never sees a partial write.
    assert_ne!(std::fs::metadata(&file).unwrap().ino(), before);
    for wanted in [0o644, 0o640, 0o600] {
        write_atomically(&file, b"new", wanted).unwrap();
        assert_eq!(mode(&file), wanted);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
    }
    // No temporary file left beside it.
    let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("shop.conf")]);
}
