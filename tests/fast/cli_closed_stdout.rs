//! Commands whose stdout is a closed pipe (`zdd history | head -1` once `head` has exited) end normally: no
//! panic, the same exit code, and a deploy still rolls back.

use crate::executor_support as support;

use std::process::{Command, Output, Stdio};

use support::{Scratch, text};

/// Run `cmd` with stdout a pipe whose reading end is already closed: every write fails with EPIPE.
fn with_closed_stdout(mut cmd: Command) -> Output {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    cmd.stdout(Stdio::from(writer)).stderr(Stdio::piped()).output().unwrap()
}

fn assert_no_panic(what: &str, out: &Output, code: i32) {
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert_eq!(out.status.code(), Some(code), "{what}: {stderr}");
}

#[test]
fn printing_commands_survive_a_closed_stdout() {
    let s = Scratch::new("state");
    assert_eq!(s.zdd("run", &["--release", "r1"]).status.code(), Some(0));
    for command in ["history", "status", "plan", "graph", "check"] {
        let mut cmd = s.command(command, &[]);
        if command == "graph" || command == "check" {
            // These take no --state-dir: build the command without it.
            cmd = Command::new(env!("CARGO_BIN_EXE_zdd"));
            cmd.arg(command).arg(&s.plan).arg("--var").arg(format!("out={}", s.out().display()));
        }
        assert_no_panic(command, &with_closed_stdout(cmd), 0);
    }
    for args in [&["kinds"][..], &["completions", "bash"], &["man"]] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zdd"));
        cmd.args(args);
        assert_no_panic(&args.join(" "), &with_closed_stdout(cmd), 0);
    }
}

#[test]
fn a_failing_run_with_a_closed_stdout_still_rolls_back() {
    let s = Scratch::new("rollback-order");
    for format in ["--plain", "--json"] {
        let _ = std::fs::remove_file(s.out().join("undo.log"));
        let out = with_closed_stdout(s.command("run", &[format, "--jobs", "8"]));
        assert_no_panic(format, &out, 1);
        // broken, medium and quick need only base: undone together (in any order), base after them.
        let log = s.read("undo.log");
        let mut lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.pop(), Some("base"), "{format}: {log}");
        lines.sort_unstable();
        assert_eq!(lines, ["broken", "medium", "quick"], "{format}: {log}");
    }
}
