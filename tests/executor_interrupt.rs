//! Interrupted runs: SIGINT rolls back; `kill -9` leaves a journal that `zdd run` refuses and `zdd recover`
//! undoes; the deploy lock (a second run exits 4; a dead holder's lock is taken over).

#[path = "fixtures/executor/support.rs"]
mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{Scratch, signal, text};

/// Kill what a killed zdd left running (its step's `sleep`), so the test leaves nothing behind.
fn kill_orphan(s: &Scratch) {
    if let Ok(pid) = s.read("hang.pid").trim().parse::<i32>() {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
}

#[test]
fn sigint_mid_run_rolls_back() {
    let s = Scratch::new("interrupt");
    let child = s.spawn("run", &["--plain"]);
    s.wait_for("hang.pid", Duration::from_secs(10));
    let started = Instant::now();
    signal(&child, Signal::SIGINT);
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(s.read("undo.log"), "hang\nfirst\n");
    assert!(stdout.contains("interrupted"), "{stdout}");
    assert!(stdout.contains("hang: cancelled"), "{stdout}");
    // The step's process group is gone.
    let pid: i32 = s.read("hang.pid").trim().parse().unwrap();
    assert!(nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), None).is_err(), "the step's sleep survived");
}

#[test]
fn after_kill_9_run_refuses_and_recover_undoes_from_the_journal() {
    let s = Scratch::new("interrupt");
    let mut child = s.spawn("run", &["--plain"]);
    s.wait_for("hang.pid", Duration::from_secs(10));
    signal(&child, Signal::SIGKILL);
    child.wait().unwrap();
    kill_orphan(&s);

    let refused = s.zdd("run", &["--var", "nap=0"]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{}{stderr}", text(&refused.stdout));
    assert!(stderr.contains("did not finish") && stderr.contains("zdd recover"), "{stderr}");
    assert_eq!(s.read("undo.log"), "", "nothing is undone before recover");

    let recovered = s.zdd("recover", &["--plain"]);
    let stdout = text(&recovered.stdout);
    assert_eq!(recovered.status.code(), Some(0), "{stdout}{}", text(&recovered.stderr));
    assert_eq!(s.read("undo.log"), "hang\nfirst\n");
    assert!(stdout.contains("recovering run"), "{stdout}");

    let again = s.zdd("recover", &[]);
    assert_eq!(again.status.code(), Some(0));
    assert!(text(&again.stdout).contains("nothing to recover"));
    let run = s.zdd("run", &["--var", "nap=0"]);
    assert_eq!(run.status.code(), Some(0), "{}{}", text(&run.stdout), text(&run.stderr));
    assert_eq!(s.read("undo.log"), "hang\nfirst\n", "recover undid each step once");
}

#[test]
fn a_second_concurrent_run_exits_4_naming_the_holder() {
    let s = Scratch::new("lock");
    let first = s.spawn("run", &["--var", "nap=3"]);
    s.wait_for("holding", Duration::from_secs(10));
    let second = s.zdd("run", &[]);
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.id())), "{stderr}");
    assert!(stderr.contains("--lock-wait"), "{stderr}");

    // With --lock-wait, the second run waits for the first and then deploys.
    let waited = s.zdd("run", &["--lock-wait", "20s"]);
    assert_eq!(waited.status.code(), Some(0), "{}", text(&waited.stderr));
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0));
}

#[test]
fn a_stale_lock_of_a_dead_pid_is_taken_over() {
    let s = Scratch::new("lock");
    std::fs::create_dir(s.state()).unwrap();
    let mut perms = std::fs::metadata(s.state()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    std::fs::set_permissions(s.state(), perms).unwrap();
    let stale = serde_json::json!({
        "host": "elsewhere", "pid": 999_999, "user": "ghost", "started_at": "2026-01-01T00:00:00Z", "command": "run"
    });
    std::fs::write(s.state().join("lock"), stale.to_string()).unwrap();
    let out = s.zdd("run", &["--plain"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("warning: took over the deploy lock left by pid 999999"), "{stdout}");
}

#[test]
fn unlock_removes_a_dead_holders_lock() {
    let s = Scratch::new("lock");
    std::fs::create_dir(s.state()).unwrap();
    let stale = serde_json::json!({
        "host": "elsewhere", "pid": 999_999, "user": "ghost", "started_at": "2026-01-01T00:00:00Z", "command": "run"
    });
    std::fs::write(s.state().join("lock"), stale.to_string()).unwrap();
    let out = s.zdd("unlock", &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("pid 999999"));
    assert!(!s.state().join("lock").exists());
}
