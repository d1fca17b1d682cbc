//! Interrupted runs: SIGINT rolls back; `kill -9` leaves a journal that `zdd run` refuses and `zdd recover`
//! undoes; the deploy lock (a second run exits 4; a dead holder's lock is taken over).

use crate::executor_support as support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{Scratch, signal, text};

/// Interrupt a run while `hang` sleeps: it is cancelled, its process group killed, and both steps undone.
fn interrupt_mid_run(sig: Signal) {
    let s = Scratch::new("interrupt");
    let child = s.spawn("run", &["--plain"]);
    s.wait_for("hang.pid", Duration::from_secs(10));
    let started = Instant::now();
    signal(&child, sig);
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(s.read("undo.log"), "hang\nfirst\n");
    assert!(stdout.contains("interrupted"), "{stdout}");
    assert!(stdout.contains("hang: cancelled"), "{stdout}");
    // The shell creates the file before it writes its pid: on a busy machine it can be read in between.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.read("hang.pid").trim().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid: u32 = s.read("hang.pid").trim().parse().unwrap();
    assert!(!zdd_engine::host::local::pid_alive(pid), "the step's shell survived");
}

#[test]
fn sigint_mid_run_rolls_back() {
    interrupt_mid_run(Signal::SIGINT);
}

#[test]
fn sigterm_mid_run_rolls_back() {
    interrupt_mid_run(Signal::SIGTERM);
}

#[test]
fn after_kill_9_run_refuses_and_recover_undoes_from_the_journal() {
    let s = Scratch::new("interrupt");
    let mut child = s.spawn("run", &["--plain"]);
    let pgid = s.wait_for_pid("hang.pid", Duration::from_secs(10));
    s.wait_until_logged(pgid, Duration::from_secs(10));
    signal(&child, Signal::SIGKILL);
    child.wait().unwrap();
    // The step's `sleep` outlived zdd (its own process group): recover must stop it.
    let pgid = nix::unistd::Pid::from_raw(pgid);
    assert!(nix::sys::signal::killpg(pgid, None).is_ok(), "the step's process group should still be running");

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
    assert!(stdout.contains(&format!("stopped process group {pgid}")), "{stdout}");
    assert!(
        !zdd_engine::host::local::pid_alive(pgid.as_raw().cast_unsigned()),
        "recover left the step's process running"
    );

    let again = s.zdd("recover", &[]);
    assert_eq!(again.status.code(), Some(0));
    assert!(text(&again.stdout).contains("nothing to recover"));
    let run = s.zdd("run", &["--var", "nap=0"]);
    assert_eq!(run.status.code(), Some(0), "{}{}", text(&run.stdout), text(&run.stderr));
    assert_eq!(s.read("undo.log"), "hang\nfirst\n", "recover undid each step once");
}

/// Undo uses the facts recorded before each effect, never the plan as it is now: after `kill -9`, the plan is
/// edited (the undo commands changed, `hang` removed, the order reversed); `recover` still runs the recorded
/// undos, in the recorded graph's order.
#[test]
fn recover_after_kill_9_undoes_what_was_recorded_even_after_the_plan_was_edited() {
    let mut s = Scratch::new("interrupt");
    let plan = s.dir.path().join("plan.kdl");
    std::fs::copy(&s.plan, &plan).unwrap();
    s.plan = plan;
    let mut child = s.spawn("run", &["--plain"]);
    s.wait_for("hang.pid", Duration::from_secs(10));
    signal(&child, Signal::SIGKILL);
    child.wait().unwrap();

    std::fs::write(
        &s.plan,
        "plan \"interrupt\"\nvar \"out\"\nvar \"nap\" \"30\"\n\
         step \"first\" kind=\"exec\" {\n    run \"true\"\n    undo \"echo edited-first >> {{out}}/undo.log\"\n}\n\
         step \"other\" kind=\"exec\" {\n    run \"true\"\n}\n",
    )
    .unwrap();
    let recovered = s.zdd("recover", &["--plain"]);
    let stdout = text(&recovered.stdout);
    assert_eq!(recovered.status.code(), Some(0), "{stdout}{}", text(&recovered.stderr));
    assert_eq!(s.read("undo.log"), "hang\nfirst\n", "recover ran the recorded undos, not the edited plan's");
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
    assert!(text(&waited.stderr).contains("waiting up to 20s"), "{}", text(&waited.stderr));
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
fn unlock_clears_a_dead_holders_lock() {
    let s = Scratch::new("lock");
    std::fs::create_dir(s.state()).unwrap();
    let stale = serde_json::json!({
        "host": "elsewhere", "pid": 999_999, "user": "ghost", "started_at": "2026-01-01T00:00:00Z", "command": "run"
    });
    std::fs::write(s.state().join("lock"), stale.to_string()).unwrap();
    let out = s.zdd("unlock", &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("cleared the deploy lock left by pid 999999"), "{}", text(&out.stdout));
    assert_eq!(std::fs::read_to_string(s.state().join("lock")).unwrap(), "", "the owner is cleared, the file kept");
}

#[test]
fn an_incomplete_rollback_exits_3_and_recover_finishes_it() {
    let s = Scratch::new("undo-fails");
    let out = s.zdd("run", &["--plain"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("ROLLBACK INCOMPLETE"), "{stdout}");
    assert!(stdout.contains("- stubborn: its undo failed"), "{stdout}");
    assert!(stdout.contains("trying again"), "the undo was not retried: {stdout}");

    let refused = s.zdd("run", &[]);
    assert_eq!(refused.status.code(), Some(3));
    assert!(text(&refused.stderr).contains("zdd recover"));

    let still_broken = s.zdd("recover", &[]);
    assert_eq!(still_broken.status.code(), Some(3));
    std::fs::write(s.out().join("fixed"), "").unwrap();
    let recovered = s.zdd("recover", &[]);
    assert_eq!(recovered.status.code(), Some(0), "{}", text(&recovered.stdout));
    assert_eq!(s.read("undo.log"), "stubborn\n");
    let history = s.zdd("history", &["--json"]);
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let outcomes: Vec<&str> = history.as_array().unwrap().iter().map(|h| h["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["rollback-incomplete", "rollback-incomplete", "rolled-back"]);
}

#[test]
fn signals_during_the_rollback_do_not_stop_it_and_say_why() {
    let s = Scratch::new("slow-undo");
    let child = s.spawn("run", &["--plain"]);
    s.wait_for("undoing", Duration::from_secs(10));
    signal(&child, Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(100));
    signal(&child, Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert_eq!(s.read("undo.log"), "first\n", "the undo was cut short");
    assert!(stdout.contains("every change was rolled back"), "{stdout}");
    // The first signal is answered by the rollback, the second by the signal handler.
    assert_eq!(stdout.matches("warning: already stopping").count(), 2, "{stdout}");
}

#[test]
fn ctrl_c_during_recover_does_not_cut_an_undo_short() {
    let s = Scratch::new("slow-recover");
    let mut run = s.spawn("run", &["--plain"]);
    s.wait_for("hang.pid", Duration::from_secs(10));
    signal(&run, Signal::SIGKILL);
    let _ = run.wait();
    let recover = s.spawn("recover", &["--plain"]);
    s.wait_for("undoing", Duration::from_secs(10));
    signal(&recover, Signal::SIGINT);
    let out = recover.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(s.read("undo.log"), "first\n", "the undo was cut short");
    assert!(stdout.contains("warning: already stopping"), "{stdout}");
}
