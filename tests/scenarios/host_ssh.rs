//! `SshHost` against real hosts: two network namespaces, each with its own sshd, `/srv` and `/run`
//! (`support::hosts`, made once for this binary).
//!
//! The same contract (commands, words, files, links, accounts, detached processes, cancellation) is checked on
//! the local host and on an SSH host. Then what only SSH has: two hosts that are separate machines, reached by
//! name and by bridge address; a cancelled or dropped remote command that leaves nothing running on its host
//! (seen from outside the host); more commands at once than sshd's `MaxSessions`; a host key that `known_hosts`
//! does not list.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::hosts::{self, Hosts};
use tokio_util::sync::CancellationToken;
use zdd_engine::host::{Command, Destination, Host, HostError, LineSink, LocalHost, SshHost, SshOptions, UserRef};

async fn connect(hosts: &Hosts, i: usize) -> SshHost {
    let destination = Destination::parse(&hosts.destination(i)).expect("a test destination");
    SshHost::connect(&destination, &options(hosts)).await.unwrap_or_else(|e| panic!("{e}"))
}

fn options(hosts: &Hosts) -> SshOptions {
    SshOptions {
        config_file: Some(hosts.ssh_config.clone()),
        control_dir: Some(hosts.control_dir.clone()),
        ..SshOptions::default()
    }
}

/// Polls an async check every 20 ms for up to 10 s.
async fn eventually<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) -> bool {
    for _ in 0..500 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// What every host does the same way. `scratch` is an empty directory on the host, without symlinks in its path.
async fn contract(host: &dyn Host, scratch: &Path) {
    let none = CancellationToken::new();
    let run = |cmd: Command| {
        let none = none.clone();
        async move { host.run(&cmd, &none, None).await.unwrap_or_else(|e| panic!("{}: {e}", host.name())) }
    };

    // Exit codes and both streams; 127 from the program itself is its exit code, not a missing program.
    let out = run(Command::shell("echo out; echo err >&2; exit 3")).await;
    assert_eq!((out.code, out.stdout_str(), out.stderr_str()), (Some(3), "out\n".into(), "err\n".into()));
    assert_eq!(run(Command::shell("exit 127")).await.code, Some(127));
    assert_eq!(run(Command::shell("kill -KILL $$")).await.code, None, "killed by a signal: no exit code");
    // All of a large output arrives, however its end and the exit status race.
    let big = run(Command::shell("seq 1 100000; echo done >&2")).await;
    let expected = (1..=100_000).map(|i: u32| i.to_string()).collect::<Vec<_>>().join("\n") + "\n";
    assert!(big.stdout_str() == expected, "{} bytes of output, not the {} printed", big.stdout.len(), expected.len());
    assert_eq!(big.stderr_str(), "done\n");

    // Words arrive as they were given: no shell reads them on the way.
    let words = ["a b", "$HOME;", "it's", "`id`", "\"q\"", "*", "a\nb", "", "-n", "\\", "&& false", "$(id)", "|", ">x"];
    let out = run(Command::new("printf").arg("%s|").args(words)).await;
    assert_eq!(out.stdout_str(), format!("{}|", words.join("|")));

    // stdin, env, cwd, and each line to the sink as it comes.
    let work = scratch.join("work dir");
    host.create_dir_all(&work).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let sink: LineSink = Box::new(move |line: &str| seen2.lock().unwrap().push(line.to_owned()));
    let mut cmd = Command::shell("cat; echo \"$GREETING\"; pwd -P").env("GREETING", "hello 'world'").cwd(&work);
    cmd.stdin = Some(b"from stdin\n".to_vec());
    assert!(host.run(&cmd, &none, Some(&sink)).await.unwrap().success());
    let expected = vec!["from stdin".to_owned(), "hello 'world'".to_owned(), work.display().to_string()];
    assert_eq!(*seen.lock().unwrap(), expected);

    // A missing program or directory is a spawn failure that reads as NotFound (fatal for a step).
    let missing = host.run(&Command::new("/nonexistent/zdd-test"), &none, None).await.unwrap_err();
    assert!(
        matches!(&missing, HostError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{missing}"
    );
    let nowhere = host.run(&Command::new("true").cwd(scratch.join("nowhere")), &none, None).await.unwrap_err();
    assert!(
        matches!(&nowhere, HostError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{nowhere}"
    );

    files(host, scratch).await;
    accounts(host).await;
    detached(host, scratch).await;

    // Cancelling returns Cancelled (the process-group checks from outside are in the SSH-only tests).
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let mut sleeper = Command::shell("sleep 1005 & wait");
    sleeper.kill_grace = Duration::from_millis(300);
    let err = host.run(&sleeper, &cancel, None).await.unwrap_err();
    assert!(matches!(err, HostError::Cancelled { .. }), "{err}");
    let err = host.run(&Command::new("true"), &cancel, None).await.unwrap_err();
    assert!(matches!(err, HostError::Cancelled { .. }), "an already cancelled run starts nothing: {err}");
}

async fn files(host: &dyn Host, scratch: &Path) {
    let dir = scratch.join("a/b");
    let file = dir.join("conf");
    let err = host.write_file(&file, b"x", 0o644).await.unwrap_err();
    assert!(matches!(&err, HostError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound), "{err}");
    host.create_dir_all(&dir).await.unwrap();
    host.write_file(&file, b"one", 0o640).await.unwrap();
    host.write_file(&file, b"two", 0o600).await.unwrap();
    assert_eq!(host.read_file(&file).await.unwrap().as_deref(), Some(&b"two"[..]));
    let stat = host.stat(&file).await.unwrap().unwrap();
    assert_eq!((stat.mode, stat.is_dir, stat.uid), (0o600, false, 0));
    assert!(host.stat(&dir).await.unwrap().unwrap().is_dir);
    assert_eq!(host.stat(&scratch.join("missing")).await.unwrap(), None);
    assert_eq!(host.list_dir(&dir).await.unwrap(), vec!["conf".to_owned()], "no temporary file is left");
    assert_eq!(host.read_file(&scratch.join("missing")).await.unwrap(), None);
    assert_eq!(host.list_dir(&scratch.join("nope")).await.unwrap(), Vec::<String>::new());
    let bytes: Vec<u8> = (0..=255u8).chain(*b"no newline at the end").collect();
    host.write_file(&dir.join("binary"), &bytes, 0o644).await.unwrap();
    assert_eq!(host.read_file(&dir.join("binary")).await.unwrap(), Some(bytes));
    let odd = "it's a\nname";
    host.write_file(&dir.join(odd), b"", 0o644).await.unwrap();
    assert_eq!(host.list_dir(&dir).await.unwrap(), vec!["binary".to_owned(), "conf".into(), odd.into()]);

    let link = scratch.join("current");
    assert_eq!(host.read_link(&link).await.unwrap(), None);
    host.swap_symlink(&link, Path::new("a")).await.unwrap();
    host.swap_symlink(&link, Path::new("a/b")).await.unwrap();
    assert_eq!(host.read_link(&link).await.unwrap(), Some(PathBuf::from("a/b")));
    assert_eq!(host.read_link(&file).await.unwrap(), None);
    assert_eq!(host.read_file(&link.join("conf")).await.unwrap().as_deref(), Some(&b"two"[..]));
    let dangling = scratch.join("dangling");
    host.swap_symlink(&dangling, Path::new("nowhere")).await.unwrap();
    assert!(host.exists(&dangling).await.unwrap(), "a dangling link exists");
    assert_eq!(host.stat(&dangling).await.unwrap(), None, "stat follows links");

    host.remove_all(&link).await.unwrap();
    assert!(host.exists(&file).await.unwrap(), "removing a link must not follow it");
    host.remove_all(&scratch.join("a")).await.unwrap();
    host.remove_all(&scratch.join("a")).await.unwrap();
    assert!(!host.exists(&scratch.join("a")).await.unwrap());
}

async fn accounts(host: &dyn Host) {
    let root = host.account(&UserRef::Name("root".into()), None).await.unwrap().unwrap();
    assert_eq!((root.name.as_str(), root.uid, root.gid, root.groups.first()), ("root", 0, 0, Some(&0)));
    assert_eq!(host.account(&UserRef::Uid(0), None).await.unwrap().map(|a| a.name), Some("root".into()));
    assert_eq!(host.account(&UserRef::Name("zdd-no-such-user".into()), None).await.unwrap(), None);
    assert_eq!(host.group_id("root").await.unwrap(), Some(0));
    assert_eq!(host.group_id("zdd-no-such-group").await.unwrap(), None);
}

async fn detached(host: &dyn Host, scratch: &Path) {
    let log = scratch.join("detached.log");
    let cmd =
        Command::shell("echo \"started $GREETING in $(pwd -P)\"; exec sleep 1004").env("GREETING", "hi").cwd(scratch);
    let pid = host.spawn_detached(&cmd, &log).await.unwrap();
    assert!(host.process_alive(pid).await.unwrap());
    let expected = format!("started hi in {}\n", scratch.display());
    assert!(eventually(|| async { host.read_file(&log).await.unwrap() == Some(expected.clone().into_bytes()) }).await);
    host.signal(pid, "0").await.unwrap();
    assert!(host.signal(pid, "BOGUS").await.is_err());
    host.signal(pid, "TERM").await.unwrap();
    assert!(eventually(|| async { !host.process_alive(pid).await.unwrap() }).await, "pid {pid} outlived TERM");
    // (A gone detached process may linger as a zombie until init reaps it: signalling no process at all fails.)
    let nobody = u32::try_from(i32::MAX).unwrap();
    assert!(host.signal(nobody, "0").await.is_err(), "signalling no process fails");
    assert!(!host.process_alive(nobody).await.unwrap());
}

#[tokio::test]
async fn contract_holds_on_the_local_host() {
    let dir = tempfile::tempdir().unwrap();
    contract(&LocalHost::new(), &dir.path().canonicalize().unwrap()).await;
}

#[tokio::test]
async fn contract_holds_on_an_ssh_host() {
    let Some(hosts) = hosts::shared("contract_holds_on_an_ssh_host") else { return };
    let host = connect(hosts, 0).await;
    assert_eq!(host.name(), hosts.destination(0));
    contract(&host, Path::new("/srv/contract")).await;
    // The host's /srv is the test's directory: what the host wrote is there, and only there.
    assert!(hosts.machines[0].srv.join("contract/work dir").is_dir());
    assert!(!hosts.machines[1].srv.join("contract").exists());
}

#[tokio::test]
async fn each_host_is_its_own_machine() {
    let Some(hosts) = hosts::shared("each_host_is_its_own_machine") else { return };
    let none = CancellationToken::new();
    let (h1, h2) = (connect(hosts, 0).await, connect(hosts, 1).await);
    for (host, test_host) in [(&h1, &hosts.machines[0]), (&h2, &hosts.machines[1])] {
        let out = host.run(&Command::new("hostname"), &none, None).await.unwrap();
        assert_eq!(out.stdout_str().trim(), test_host.name);
    }
    h1.write_file(Path::new("/run/zdd-marker"), b"h1", 0o644).await.unwrap();
    assert_eq!(h2.read_file(Path::new("/run/zdd-marker")).await.unwrap(), None, "each host has its own /run");
    assert!(!Path::new("/run/zdd-marker").exists(), "and not this machine's");

    // The bridge carries host-to-host traffic (Docker's FORWARD policy notwithstanding) and the test's own.
    let nc = Command::new("nc").args(["-z", "-w", "5", &hosts.machines[0].address, "22"]);
    let out = h2.run(&nc, &none, None).await.unwrap();
    assert!(out.success(), "h2 cannot reach h1 over the bridge: {}", out.stderr_str());
    let by_address = Destination::parse(&hosts.address_destination(1)).unwrap();
    assert_eq!(by_address.port, Some(22));
    let direct = SshHost::connect(&by_address, &options(hosts)).await.unwrap_or_else(|e| panic!("{e}"));
    let out = direct.run(&Command::new("hostname"), &none, None).await.unwrap();
    assert_eq!(out.stdout_str().trim(), hosts.machines[1].name);
    let gateway =
        direct.run(&Command::new("ip").args(["-4", "route", "get", &hosts.gateway]), &none, None).await.unwrap();
    assert!(gateway.stdout_str().contains("dev eth0"), "{}", gateway.stdout_str());

    // Accounts come from the host's passwd and group files (the same files as here, so the same answers).
    let local = LocalHost::new();
    for user in [UserRef::Name("root".into()), UserRef::Name("nobody".into()), UserRef::Uid(0)] {
        for gid in [None, Some(0)] {
            assert_eq!(
                h1.account(&user, gid).await.unwrap(),
                local.account(&user, gid).await.unwrap(),
                "{user} {gid:?}"
            );
        }
    }
    assert_eq!(h1.group_id("nogroup").await.unwrap(), local.group_id("nogroup").await.unwrap());
    assert_eq!(h1.stat(Path::new("/etc/passwd")).await.unwrap(), local.stat(Path::new("/etc/passwd")).await.unwrap());
}

/// Cancels `cmd` once `needle` runs on host `i`, and checks from outside the host that nothing of it is left.
async fn cancel_and_check(hosts: &Hosts, host: &SshHost, i: usize, cmd: Command, needle: &str) {
    let cancel = CancellationToken::new();
    let run = {
        let cancel = cancel.clone();
        async move { host.run(&cmd, &cancel, None).await }
    };
    let watch = async {
        let started = eventually(|| async { hosts.processes_matching(i, needle).len() >= 2 }).await;
        assert!(started, "`{needle}` and its child never ran: {:?}", hosts.processes_matching(i, needle));
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(run, watch);
    let err = result.expect_err("a cancelled run fails");
    assert!(matches!(err, HostError::Cancelled { .. }), "{err}");
    // The run waited for the group to go: nothing of it is left when it returns.
    assert_eq!(
        hosts.processes_matching(i, needle),
        Vec::new(),
        "survivors of `{needle}` on {}",
        hosts.machines[i].name
    );
}

#[tokio::test]
async fn cancel_leaves_nothing_running_on_the_host() {
    let Some(hosts) = hosts::shared("cancel_leaves_nothing_running_on_the_host") else { return };
    let host = connect(hosts, 1).await;
    // A command and a child it forked; TERM ends both.
    cancel_and_check(hosts, &host, 1, Command::new("sh").args(["-c", "sleep 1001 & exec sleep 1001"]), "sleep 1001")
        .await;
    // A command that ignores TERM (and so does its child): KILL after the grace.
    let mut stubborn = Command::new("sh").args(["-c", "trap '' TERM; sleep 1002 & sleep 1002; wait"]);
    stubborn.kill_grace = Duration::from_millis(300);
    cancel_and_check(hosts, &host, 1, stubborn, "sleep 1002").await;

    // A run whose caller drops it instead of cancelling: its group is killed all the same.
    let task = {
        let host = connect(hosts, 1).await;
        tokio::spawn(async move {
            let _ = host.run(&Command::shell("sleep 1003 & sleep 1003"), &CancellationToken::new(), None).await;
        })
    };
    assert!(eventually(|| async { hosts.processes_matching(1, "sleep 1003").len() >= 2 }).await);
    task.abort();
    assert!(
        eventually(|| async { hosts.processes_matching(1, "sleep 1003").is_empty() }).await,
        "a dropped run left {:?}",
        hosts.processes_matching(1, "sleep 1003")
    );

    // Dropped at any moment, also while its session is still opening (the remote command may run before the
    // mux client hears that its session opened): nothing of it is left once it could have started.
    for (i, delay_ms) in (0..60).step_by(4).enumerate() {
        let needle = format!("sleep {}", 1100 + i);
        let task = {
            let host = connect(hosts, 1).await;
            let cmd = Command::shell(format!("{needle} & {needle}"));
            tokio::spawn(async move {
                let _ = host.run(&cmd, &CancellationToken::new(), None).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        task.abort();
        // A spawn that was on its way still starts; its group is killed as soon as its header came.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            eventually(|| async { hosts.processes_matching(1, &needle).is_empty() }).await,
            "a run dropped after {delay_ms} ms left {:?}",
            hosts.processes_matching(1, &needle)
        );
    }
}

#[tokio::test]
async fn more_commands_than_max_sessions_wait_their_turn() {
    let Some(hosts) = hosts::shared("more_commands_than_max_sessions_wait_their_turn") else { return };
    let host = Arc::new(connect(hosts, 0).await);
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..24 {
        let host = host.clone();
        runs.spawn(async move {
            let out = host.run(&Command::shell(format!("sleep 0.2; echo {i}")), &CancellationToken::new(), None).await;
            (i, out)
        });
    }
    let mut done = 0;
    while let Some(joined) = runs.join_next().await {
        let (i, out) = joined.expect("a run task");
        let out = out.unwrap_or_else(|e| panic!("run {i}: {e}"));
        assert_eq!(out.stdout_str(), format!("{i}\n"));
        done += 1;
    }
    assert_eq!(done, 24);
}

#[tokio::test]
async fn a_host_key_that_known_hosts_does_not_list_is_refused() {
    let Some(hosts) = hosts::shared("a_host_key_that_known_hosts_does_not_list_is_refused") else { return };
    // The same config with a known_hosts that lists another key for the host.
    let other = hosts.dir.join("other_known_hosts");
    let wrong_key = std::fs::read_to_string(hosts.dir.join("id.pub")).unwrap();
    let key: Vec<&str> = wrong_key.split_whitespace().take(2).collect();
    std::fs::write(&other, format!("{} {}\n", hosts.machines[0].name, key.join(" "))).unwrap();
    let config = std::fs::read_to_string(&hosts.ssh_config).unwrap();
    let other_config = hosts.dir.join("other_ssh_config");
    std::fs::write(
        &other_config,
        config.replace(&hosts.dir.join("known_hosts").display().to_string(), &other.display().to_string()),
    )
    .unwrap();
    let options = SshOptions { config_file: Some(other_config), ..options(hosts) };
    let err = SshHost::connect(&Destination::parse(&hosts.destination(0)).unwrap(), &options).await.unwrap_err();
    assert!(matches!(&err, HostError::Connection { .. }), "{err}");
    assert!(err.to_string().to_lowercase().contains("host key"), "{err}");
    let _ = std::fs::remove_file(&other);
}

/// A small HTTP server for the probe tests, run on a host: on a unix socket (an absolute path) or on a port of
/// the host's `127.0.0.1`. Each answer says what was asked, of which host, and with which `Host` header.
const PROBED_SERVER: &str = r#"
import http.server, os, socket, socketserver, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = "healthy {} on {} host={} probe={}".format(
            self.path, socket.gethostname(), self.headers.get("Host"), self.headers.get("X-Zdd-Probe")
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

where = sys.argv[1]
if where.startswith("/"):
    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True
    if os.path.exists(where):
        os.unlink(where)
    server = Server(where, Handler)
else:
    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
    server = Server(("127.0.0.1", int(where)), Handler)
print("listening", flush=True)
server.serve_forever()
"#;

/// Starts [`PROBED_SERVER`] on `host` (whose `/srv` is `srv` here) at `where_` and waits until it listens.
async fn serve_on(host: &SshHost, srv: &Path, dir: &str, where_: &str) -> u32 {
    std::fs::create_dir_all(srv.join(dir)).unwrap();
    std::fs::write(srv.join(dir).join("serve.py"), PROBED_SERVER).unwrap();
    let remote = Path::new("/srv").join(dir);
    let log = remote.join(format!("serve-{}.log", where_.replace('/', "_")));
    let cmd = Command::new("python3").arg(remote.join("serve.py").display().to_string()).arg(where_);
    let pid = host.spawn_detached(&cmd, &log).await.unwrap();
    let started =
        eventually(|| async { host.read_file(&log).await.unwrap().is_some_and(|l| l.starts_with(b"listening")) });
    assert!(started.await, "the test server did not start: {:?}", host.read_file(&log).await);
    pid
}

/// Probes reach a host's unix socket and its `127.0.0.1:PORT` through the SSH connection, sending the request
/// they send locally (path, `Host` header, probe header).
#[tokio::test]
async fn probes_reach_the_hosts_own_sockets_and_loopback() {
    use zdd_steps::probe::{self, ProbeUrl};
    let Some(hosts) = hosts::shared("probes_reach_the_hosts_own_sockets_and_loopback") else { return };
    let host = connect(hosts, 0).await;
    let machine = &hosts.machines[0];
    // The host's 127.0.0.1 is its own: no port of this machine is involved.
    let servers = [
        serve_on(&host, &machine.srv, "probe", "/srv/probe/app.sock").await,
        serve_on(&host, &machine.srv, "probe", "18431").await,
    ];
    let cases = [
        ("http+unix:///srv/probe/app.sock:/health/", None, "host=localhost"),
        ("http+unix:///srv/probe/app.sock:/health/", Some("shop.example"), "host=shop.example"),
        ("http://127.0.0.1:18431/health/", None, "host=127.0.0.1:18431"),
        ("http://localhost:18431/health/", Some("shop.example"), "host=shop.example"),
    ];
    for (url, header, expected_host) in cases {
        let url = ProbeUrl::parse(url).unwrap();
        let client = probe::client(&host, &url, Duration::from_secs(5)).await.unwrap_or_else(|e| panic!("{e}"));
        // Twice on one forward (made once per endpoint), each on a fresh connection.
        for _ in 0..2 {
            let answer = probe::get(&client, &url, header).await.unwrap_or_else(|e| panic!("{}: {e}", url.url));
            let expected = format!("healthy /health/ on {} {expected_host} probe=1", machine.name);
            assert_eq!((answer.status, answer.body), (200, expected), "{}", url.url);
        }
    }
    // A port nobody listens on is an error the gate retries, not a hang.
    let nobody = ProbeUrl::parse("http://127.0.0.1:18432/").unwrap();
    let client = probe::client(&host, &nobody, Duration::from_secs(5)).await.unwrap();
    assert!(probe::get(&client, &nobody, None).await.is_err());
    for pid in servers {
        host.signal(pid, "TERM").await.unwrap();
    }
}

/// A health-gate step whose host is an SSH host polls the instance's socket there.
#[tokio::test]
async fn a_health_gate_polls_a_socket_of_an_ssh_host() {
    let Some(hosts) = hosts::shared("a_health_gate_polls_a_socket_of_an_ssh_host") else { return };
    let host = Arc::new(connect(hosts, 1).await);
    let machine = &hosts.machines[1];
    let server = serve_on(&host, &machine.srv, "gate", "/srv/gate/web.sock").await;
    let dir = crate::support::env::TestDir::new("ssh-health-gate");
    let gate = |url: &str, within: &str| {
        format!(
            "plan \"gate\"\nstep \"health\" kind=\"health-gate\" {{\n    url \"{url}\"\n    host \"shop.example\"\n    \
             contains \"host=shop.example probe=1\"\n    within \"{within}\"\n}}\n"
        )
    };
    let run_gate = |body: String| {
        let host = host.clone();
        let plan_file = dir.join(&format!("plan-{}.kdl", body.len()));
        std::fs::write(&plan_file, body).unwrap();
        let target = crate::driver::target("r2", "b", Some(("a", "r1")));
        let plan = crate::driver::read_plan(&plan_file, &[], &target, dir.path());
        let run = crate::driver::Run::new(plan.clone(), target, dir.path());
        async move {
            let mut ctx = run.ctx("health");
            ctx.host = host;
            let step = plan.step_by_name("health").unwrap().clone();
            zdd_steps::builtin().get("health-gate").unwrap().run(&step, &ctx).await
        }
    };
    run_gate(gate("http+unix:///srv/gate/web.sock:/health/", "30s")).await.unwrap_or_else(|e| panic!("{e}"));
    let err = run_gate(gate("http+unix:///srv/gate/nobody.sock:/health/", "1s")).await.unwrap_err();
    assert!(err.to_string().contains("did not answer"), "{err}");
    host.signal(server, "TERM").await.unwrap();
}

/// The release kind streams the source (on this machine) to an SSH host as a tar archive unpacked there: file
/// contents, modes and symlinks arrive as they are here. The tree is larger than the pipes on the way (the
/// archive pipe of 64 KiB, the chunk fed to the channel of 64 KiB, the kernel's pipes), so it only arrives
/// whole because the archive is written while it is read: nothing holds it entire (see `steps/src/archive.rs`).
#[tokio::test]
async fn a_release_is_streamed_to_an_ssh_host() {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(hosts) = hosts::shared("a_release_is_streamed_to_an_ssh_host") else { return };
    let host = Arc::new(connect(hosts, 0).await);
    let dir = crate::support::env::TestDir::new("ssh-release");
    let source = dir.join("shop");
    let mode = |path: &Path| std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777;
    let set_mode =
        |path: &Path, mode: u32| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::create_dir_all(source.join("shop/static")).unwrap();
    std::fs::create_dir_all(source.join("venv/bin")).unwrap();
    // 8 MiB that do not compress (tar does not compress anyway; the bytes must all arrive in order).
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let big: Vec<u8> = (0..8 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(source.join("shop/static/bundle.bin"), &big).unwrap();
    std::fs::write(source.join("manage.py"), "#!/usr/bin/env python\n").unwrap();
    set_mode(&source.join("manage.py"), 0o755);
    std::fs::write(source.join("shop/settings.py"), "SECRET_KEY = 'x'\n").unwrap();
    set_mode(&source.join("shop/settings.py"), 0o600);
    set_mode(&source.join("shop/static"), 0o750);
    std::os::unix::fs::symlink("static/bundle.bin", source.join("shop/bundle")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", source.join("dangling")).unwrap();
    std::fs::write(source.join("venv/bin/python"), "skipped").unwrap();

    let plan_file = dir.join("plan.kdl");
    let body = format!(
        "plan \"ship\"\nstep \"release\" kind=\"release\" {{\n    root \"/srv/ship\"\n    source \"{}\"\n    \
         copy \"all\"\n}}\n",
        source.display()
    );
    std::fs::write(&plan_file, body).unwrap();
    let target = crate::driver::target("r2", "b", Some(("a", "r1")));
    let plan = crate::driver::read_plan(&plan_file, &[], &target, dir.path());
    let run = crate::driver::Run::new(plan.clone(), target, dir.path());
    let mut ctx = run.ctx("release");
    ctx.host = host.clone();
    let step = plan.step_by_name("release").unwrap().clone();
    zdd_steps::builtin().get("release").unwrap().run(&step, &ctx).await.unwrap_or_else(|e| panic!("{e}"));

    // The host's /srv is this directory: what arrived is there.
    let release = hosts.machines[0].srv.join("ship/releases/r2");
    assert!(std::fs::read(release.join("shop/static/bundle.bin")).unwrap() == big, "the large file arrived changed");
    for file in ["manage.py", "shop/settings.py", "shop/static"] {
        assert_eq!(mode(&release.join(file)), mode(&source.join(file)), "{file}");
    }
    assert_eq!(std::fs::read_link(release.join("shop/bundle")).unwrap(), Path::new("static/bundle.bin"));
    assert_eq!(std::fs::read_link(release.join("dangling")).unwrap(), Path::new("/nowhere/at/all"));
    assert!(!release.join("venv").exists(), "venvs are not copied");
    // Owned by the user zdd logged in as, not by uids of this machine.
    let owner = host.stat(&Path::new("/srv/ship/releases/r2").join("manage.py")).await.unwrap().unwrap();
    assert_eq!(owner.uid, 0);
    assert!(run.log_text().contains("streamed 5 files"), "{}", run.log_text());
}

/// A run on an SSH host logs its process group; when zdd is killed mid-run (nothing of it gets to clean up),
/// recover finds the group in the log and stops it on the host, and only that group.
#[tokio::test]
async fn recover_stops_what_a_killed_run_left_on_a_remote_host() {
    use zdd_engine::host::local::process_log;
    use zdd_engine::host::ssh::recover::stop_remote_leftovers;
    let Some(hosts) = hosts::shared("recover_stops_what_a_killed_run_left_on_a_remote_host") else { return };
    let dir = crate::support::env::TestDir::new("ssh-recover");
    let log = dir.join("processes.jsonl");
    let host = Arc::new(connect(hosts, 1).await.with_process_log(&log));
    // A finished run's group is logged as ended: recover has nothing to do for it.
    assert!(host.run(&Command::new("true"), &CancellationToken::new(), None).await.unwrap().success());
    assert!(process_log::remote_leftovers(&log).is_empty());

    // zdd "killed" mid-run: the run's future is leaked, so no destructor, guard or cancellation runs.
    let mut run = Box::pin({
        let host = host.clone();
        async move { host.run(&Command::shell("sleep 1007 & exec sleep 1007"), &CancellationToken::new(), None).await }
    });
    tokio::select! {
        _ = &mut run => panic!("the run ended by itself"),
        // The run logs the group when the host's first line (its pgid) comes back, a moment after the commands
        // start: it is polled until then, as a live zdd would be.
        started = eventually(|| async {
            hosts.processes_matching(1, "sleep 1007").len() >= 2
                && process_log::remote_leftovers(&log).contains_key(&hosts.destination(1))
        }) => assert!(started),
    }
    std::mem::forget(run);
    let left = process_log::remote_leftovers(&log);
    let groups = &left[&hosts.destination(1)];
    assert_eq!((groups.len(), groups[0].program.as_str()), (1, "/bin/sh"), "{left:?}");

    let stopped = stop_remote_leftovers(&log, &options(hosts), Duration::from_millis(500)).await;
    assert_eq!(stopped.len(), 1);
    let groups = stopped[0].groups.as_ref().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(groups.len(), 1);
    assert_eq!(hosts.processes_matching(1, "sleep 1007"), Vec::new(), "recover waited until none of it ran");
    // Again: the group is gone (its id may be another's by then), so nothing is signalled.
    let again = stop_remote_leftovers(&log, &options(hosts), Duration::from_millis(500)).await;
    assert_eq!(again[0].groups.as_ref().map_or_else(|e| panic!("{e}"), Vec::len), 0);
}

/// zdd killed after a remote command started and before its header (the pgid) reached zdd: the log holds only
/// the `spawning` line, and recover finds the command on its host by the token in its environment and stops
/// it. A daemon the command left behind in a session of its own (`setsid`, as nginx's master is) carries the
/// token too, and is not stopped.
#[tokio::test]
async fn recover_finds_a_remote_command_whose_group_was_never_logged() {
    use zdd_engine::host::local::process_log;
    use zdd_engine::host::ssh::recover::stop_remote_leftovers;
    let Some(hosts) = hosts::shared("recover_finds_a_remote_command_whose_group_was_never_logged") else { return };
    let dir = crate::support::env::TestDir::new("ssh-recover-spawning");
    let log = dir.join("processes.jsonl");
    let host = Arc::new(connect(hosts, 1).await.with_process_log(&log));
    let mut run = Box::pin({
        let host = host.clone();
        async move {
            host.run(&Command::shell("setsid sleep 1012 & exec sleep 1011"), &CancellationToken::new(), None).await
        }
    });
    tokio::select! {
        _ = &mut run => panic!("the run ended by itself"),
        started = eventually(|| async {
            !hosts.processes_matching(1, "sleep 1011").is_empty() && !hosts.processes_matching(1, "sleep 1012").is_empty()
        }) => assert!(started),
    }
    std::mem::forget(run);
    // What a zdd killed before the header came had written: the `spawning` line, not the `started` one.
    let text = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| l.contains(r#""spawning":true"#)).collect();
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    assert!(process_log::remote_leftovers(&log).is_empty(), "{kept:?}");
    assert_eq!(process_log::remote_spawning(&log).len(), 1, "{kept:?}");

    let stopped = stop_remote_leftovers(&log, &options(hosts), Duration::from_millis(500)).await;
    assert_eq!(stopped.len(), 1);
    let groups = stopped[0].groups.as_ref().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(hosts.processes_matching(1, "sleep 1011"), Vec::new(), "the command was stopped");
    let daemon = hosts.processes_matching(1, "sleep 1012");
    assert_eq!(daemon.len(), 1, "the daemon in its own session was left alone");
    for (pid, _) in daemon {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
