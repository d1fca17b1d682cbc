//! Machines for SSH tests: Linux network namespaces joined by a bridge, each a host with its own sshd (key
//! authentication, its own host key), hostname, `/srv`, `/run` and `/root`.
//!
//! Each sshd runs in `ip netns exec H unshare --uts --mount --propagation private`, with directories of the test
//! bound over `/srv` and `/root` and a tmpfs over `/run`; SSH sessions inherit those namespaces, so two hosts
//! never share releases or pid files. (An empty home also keeps this machine's `~/.bashrc` out: bash reads it
//! even for sshd's non-interactive commands, and a slow one costs every remote operation its time.) The generated ssh config reaches a host by its name through
//! `ProxyCommand ip netns exec %h nc 127.0.0.1 22` (traffic can only go to a namespace that exists), or by its
//! bridge address. The bridge's /24 also gets an `unreachable` route with a high metric: if the bridge is down,
//! packets for it are refused instead of leaving the machine. Docker's FORWARD policy (DROP) would drop
//! host-to-host traffic on the bridge, so a `DOCKER-USER` rule lets it through.
//!
//! One set of hosts serves every test of a binary ([`shared`]); it is made once, and torn down when the binary
//! exits (an `atexit` handler: the processes of each namespace killed, the namespaces, bridge, route and rule
//! removed). Names carry the test process's pid (`zs<pid>-h1`), so concurrent runs do not meet; leftovers of a
//! run that was killed are removed by the next one.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::env::{Requirement, require};
use super::proc::{run, wait_until};

/// Hosts made per test binary (three: a fleet of web hosts in `scenarios_fleet`).
pub(crate) const HOST_COUNT: usize = 3;

/// The test range: `10.213.<subnet>.0/24`, the bridge on `.1`, host `i` on `.1i` (from `.11`).
const RANGE: &str = "10.213";

/// Prefix of everything this module names (namespaces, links): `zs<pid>`.
const PREFIX: &str = "zs";

/// The hosts of this test binary, made on first use; `None` when a requirement is missing outside CI (the test
/// returns early; in CI it fails naming what is missing).
pub(crate) fn shared(test: &str) -> Option<&'static Hosts> {
    static HOSTS: OnceLock<Hosts> = OnceLock::new();
    if !require(test, &[Requirement::Root, Requirement::SshHosts]) {
        return None;
    }
    Some(HOSTS.get_or_init(|| {
        remove_stale();
        let hosts = Hosts::create();
        register_teardown();
        hosts
    }))
}

/// One test host.
#[derive(Debug, Clone)]
pub(crate) struct TestHost {
    /// The namespace's name, also its hostname and its name in the ssh config.
    pub name: String,
    /// Its address on the bridge.
    pub address: String,
    /// The directory bound over its `/srv`.
    pub srv: PathBuf,
}

/// The hosts and the ssh config that reaches them.
#[derive(Debug)]
pub(crate) struct Hosts {
    pub machines: Vec<TestHost>,
    /// `ssh -F` this: names and bridge addresses of the hosts, with the test's key and `known_hosts`.
    pub ssh_config: PathBuf,
    /// Where the keys, configs and logs are.
    pub dir: PathBuf,
    /// A short directory for control sockets.
    pub control_dir: PathBuf,
    /// The test's own address on the bridge.
    pub gateway: String,
}

impl Hosts {
    /// The destination of host `i` by name: `root@zs<pid>-h<i>`.
    pub(crate) fn destination(&self, i: usize) -> String {
        let host = &self.machines[i];
        assert_namespace(&host.name);
        format!("root@{}", host.name)
    }

    /// The destination of host `i` by bridge address and port: `root@10.213.x.1i:22`.
    pub(crate) fn address_destination(&self, i: usize) -> String {
        let host = &self.machines[i];
        assert_namespace(&host.name);
        format!("root@{}:22", host.address)
    }

    /// Live (not zombie) processes of host `i` whose command line contains `needle`, seen from outside it
    /// (`ip netns pids`).
    pub(crate) fn processes_matching(&self, i: usize, needle: &str) -> Vec<(u32, String)> {
        let name = &self.machines[i].name;
        assert_namespace(name);
        let pids = run("ip netns pids", Command::new("ip").args(["netns", "pids", name]));
        pids.split_whitespace()
            .filter_map(|pid| pid.parse::<u32>().ok())
            .filter_map(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let zombie = stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
                let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                (!zombie && text.contains(needle)).then_some((pid, text.trim().to_owned()))
            })
            .collect()
    }

    fn create() -> Hosts {
        let id = format!("{PREFIX}{}", std::process::id());
        let dir = PathBuf::from(format!("/tmp/zdd-ssh-hosts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the hosts' directory");
        let control_dir = dir.join("ctl");
        std::fs::create_dir_all(&control_dir).expect("create the control directory");
        set_mode(&control_dir, 0o700);
        let subnet = free_subnet();
        let bridge = format!("{id}br");
        let gateway = format!("{RANGE}.{subnet}.1");
        let mut state = Teardown {
            namespaces: Vec::new(),
            bridge: Some(bridge.clone()),
            route: None,
            docker_rule: None,
            daemons: Vec::new(),
            dir: dir.clone(),
        };

        keygen(&dir.join("id"));
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{gateway}/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        let range = format!("{RANGE}.{subnet}.0/24");
        ip(&["route", "add", "unreachable", &range, "metric", "4000"]);
        state.route = Some(range);
        if Command::new("iptables").args(["-S", "DOCKER-USER"]).output().is_ok_and(|o| o.status.success()) {
            let rule = vec!["DOCKER-USER".to_owned(), "-i".into(), bridge.clone(), "-o".into(), bridge.clone()];
            let mut insert = vec!["-I".to_owned()];
            insert.extend(rule.iter().cloned());
            insert.extend(["-j".to_owned(), "ACCEPT".to_owned()]);
            run("iptables -I DOCKER-USER", Command::new("iptables").args(&insert));
            state.docker_rule = Some(rule);
        }

        let mut machines = Vec::new();
        let mut known_hosts = String::new();
        for i in 1..=HOST_COUNT {
            let name = format!("{id}-h{i}");
            let address = format!("{RANGE}.{subnet}.{}", 10 + i);
            let home = dir.join(&name);
            let srv = home.join("srv");
            std::fs::create_dir_all(&srv).expect("create a host's /srv");
            std::fs::create_dir_all(home.join("root")).expect("create a host's /root");
            set_mode(&home.join("root"), 0o700);
            set_mode(&home, 0o755);
            keygen(&home.join("host_key"));

            ip(&["netns", "add", &name]);
            state.namespaces.push(name.clone());
            netns(&name, &["ip", "link", "set", "lo", "up"]);
            let veth = format!("{id}v{i}");
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name]);
            ip(&["link", "set", &veth, "master", &bridge, "up"]);
            netns(&name, &["ip", "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
            netns(&name, &["ip", "link", "set", "eth0", "up"]);

            let sshd_config = home.join("sshd_config");
            std::fs::write(&sshd_config, sshd_config_text(&home, &dir)).expect("write sshd_config");
            let log = std::fs::File::create(home.join("sshd.log")).expect("create the sshd log");
            let boot = format!(
                "mount --bind {srv} /srv && mount --bind {root} /root && mount -t tmpfs -o mode=755 tmpfs /run && \
                 mkdir -p /run/sshd && hostname {name} && exec /usr/sbin/sshd -D -e -f {config}",
                srv = srv.display(),
                root = home.join("root").display(),
                config = sshd_config.display()
            );
            let daemon = Command::new("ip")
                .args(["netns", "exec", &name, "unshare", "--uts", "--mount", "--propagation", "private"])
                .args(["sh", "-c", &boot])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup the sshd log"))
                .stderr(log)
                .spawn()
                .expect("start sshd in its namespace");
            state.daemons.push(daemon);

            let key = std::fs::read_to_string(home.join("host_key.pub")).expect("read a host key");
            let key: Vec<&str> = key.split_whitespace().take(2).collect();
            let _ = writeln!(known_hosts, "{name},{address} {}", key.join(" "));
            machines.push(TestHost { name, address, srv });
        }
        std::fs::write(dir.join("known_hosts"), known_hosts).expect("write known_hosts");
        let ssh_config = dir.join("ssh_config");
        std::fs::write(&ssh_config, ssh_config_text(&id, subnet, &dir)).expect("write ssh_config");
        *TEARDOWN.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(state);

        for host in &machines {
            let up = wait_until(Duration::from_secs(10), || {
                Command::new("ip")
                    .args(["netns", "exec", &host.name, "nc", "-z", "127.0.0.1", "22"])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            });
            let log = std::fs::read_to_string(dir.join(&host.name).join("sshd.log")).unwrap_or_default();
            assert!(up, "sshd of {} did not start listening: {log}", host.name);
        }
        Hosts { machines, ssh_config, dir, control_dir, gateway }
    }
}

fn sshd_config_text(home: &Path, dir: &Path) -> String {
    format!(
        "Port 22\nListenAddress 0.0.0.0\nHostKey {home}/host_key\nAuthorizedKeysFile {dir}/id.pub\n\
         PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         UsePAM no\nStrictModes no\nPidFile /run/sshd.pid\nMaxSessions 10\nSubsystem sftp internal-sftp\n",
        home = home.display(),
        dir = dir.display()
    )
}

fn ssh_config_text(id: &str, subnet: u8, dir: &Path) -> String {
    format!(
        "Host {id}-*\n  ProxyCommand ip netns exec %h nc 127.0.0.1 22\n\n\
         Host {id}-* {RANGE}.{subnet}.*\n  User root\n  IdentityFile {dir}/id\n  IdentitiesOnly yes\n\
         \x20 UserKnownHostsFile {dir}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n\
         \x20 BatchMode yes\n  LogLevel ERROR\n",
        dir = dir.display()
    )
}

/// Panics unless the namespace exists and is one this process made: no traffic goes anywhere else.
fn assert_namespace(name: &str) {
    let ours = format!("{PREFIX}{}-", std::process::id());
    assert!(name.starts_with(&ours), "{name} is not a namespace of this test process");
    assert!(Path::new("/run/netns").join(name).exists(), "the test's namespace {name} is gone");
}

/// A `10.213.x.0/24` no route of this machine uses (another test run's included).
fn free_subnet() -> u8 {
    let routes = run("ip route", Command::new("ip").args(["-4", "route", "show", "table", "all"]));
    let start = u8::try_from(std::process::id() % 250).unwrap_or(0);
    (0..250u8)
        .map(|k| (start + k) % 250 + 1)
        .find(|x| !routes.contains(&format!("{RANGE}.{x}.")))
        .expect("a free /24 in 10.213.0.0/16")
}

fn keygen(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    run(
        "ssh-keygen",
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "zdd-test", "-f"]).arg(path),
    );
}

fn ip(args: &[&str]) {
    run(&format!("ip {}", args.join(" ")), Command::new("ip").args(args));
}

fn netns(name: &str, args: &[&str]) {
    run(
        &format!("ip netns exec {name} {}", args.join(" ")),
        Command::new("ip").args(["netns", "exec", name]).args(args),
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// What [`teardown`] removes.
struct Teardown {
    namespaces: Vec<String>,
    bridge: Option<String>,
    route: Option<String>,
    docker_rule: Option<Vec<String>>,
    daemons: Vec<Child>,
    dir: PathBuf,
}

static TEARDOWN: Mutex<Option<Teardown>> = Mutex::new(None);

fn register_teardown() {
    extern "C" fn at_exit() {
        // Nothing may unwind into C.
        let _ = std::panic::catch_unwind(teardown);
    }
    // SAFETY: `at_exit` is a plain `extern "C" fn()` that catches every panic; registering it has no other
    // precondition.
    unsafe {
        libc::atexit(at_exit);
    }
}

/// Kill every process of the namespaces, then remove them, the bridge, the route, the rule and the directory.
fn teardown() {
    let Some(mut state) = TEARDOWN.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() else { return };
    for name in &state.namespaces {
        kill_namespace(name);
    }
    for daemon in &mut state.daemons {
        let _ = daemon.kill();
        let _ = daemon.wait();
    }
    for name in &state.namespaces {
        let _ = Command::new("ip").args(["netns", "del", name]).status();
    }
    if let Some(bridge) = &state.bridge {
        let _ = Command::new("ip").args(["link", "del", bridge]).status();
    }
    if let Some(route) = &state.route {
        let _ = Command::new("ip").args(["route", "del", "unreachable", route, "metric", "4000"]).status();
    }
    if let Some(rule) = &state.docker_rule {
        let _ = Command::new("iptables").arg("-D").args(rule).args(["-j", "ACCEPT"]).status();
    }
    if std::env::var_os("ZDD_KEEP_TEST_DIRS").is_none() {
        let _ = std::fs::remove_dir_all(&state.dir);
    }
}

/// KILL every process in a namespace (sshd, sessions, whatever a test left running), until none is left.
fn kill_namespace(name: &str) {
    for _ in 0..50 {
        let pids = Command::new("ip").args(["netns", "pids", name]).output().map(|o| o.stdout).unwrap_or_default();
        let pids: Vec<i32> = String::from_utf8_lossy(&pids).split_whitespace().filter_map(|p| p.parse().ok()).collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Remove what a killed test run of this module left: namespaces `zs<pid>-h<i>` (and their bridge, route and
/// rule) whose process is gone.
fn remove_stale() {
    let list = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    let list = String::from_utf8_lossy(&list);
    let mut stale_ids = Vec::new();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some((id, _)) = name.split_once("-h") else { continue };
        let Some(pid) = id.strip_prefix(PREFIX).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_namespace(name);
        let _ = Command::new("ip").args(["netns", "del", name]).status();
        if !stale_ids.contains(&id.to_owned()) {
            stale_ids.push(id.to_owned());
        }
    }
    for id in stale_ids {
        let bridge = format!("{id}br");
        let _ = Command::new("ip").args(["link", "del", &bridge]).stderr(Stdio::null()).status();
        let _ = Command::new("iptables")
            .args(["-D", "DOCKER-USER", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT"])
            .stderr(Stdio::null())
            .status();
        let pid = id.trim_start_matches(PREFIX);
        let _ = std::fs::remove_dir_all(format!("/tmp/zdd-ssh-hosts-{pid}"));
    }
    // Unreachable routes of runs that are gone: those whose /24 has no bridge any more.
    let routes = Command::new("ip").args(["-4", "route", "show", "type", "unreachable"]).output();
    let routes = routes.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let connected = Command::new("ip").args(["-4", "route", "show", "proto", "kernel"]).output();
    let connected = connected.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    for line in routes.lines() {
        let Some(range) = line.split_whitespace().nth(1) else { continue };
        if range.starts_with(&format!("{RANGE}.")) && line.contains("metric 4000") && !connected.contains(range) {
            let _ = Command::new("ip").args(["route", "del", "unreachable", range, "metric", "4000"]).status();
        }
    }
}
