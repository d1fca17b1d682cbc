//! Who Nginx's workers run as, and whether they can reach the upstream's sockets and the static directory.
//!
//! Nginx connects to a unix-socket upstream and serves static files from its worker processes, not its master.
//! The workers' user is, in order: the running workers' own credentials (read from `/proc`, exact); else the
//! main config's `user` directive (only the main file is read, not its `include`s); else the build's default
//! (`nginx -V`'s `--user=`, or `nobody` when the build names none, as Debian's does) — when the master runs as
//! root. A master started by another user cannot switch users: its workers run as that user.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;
use zdd_engine::diag::Code;
use zdd_engine::host::access::{self, Need, Reach};
use zdd_engine::host::{Account, Command, Host, UserRef};
use zdd_engine::preflight::Finding;

use super::nginx::Nginx;

/// The workers' account, and how it was found (for the finding's evidence).
#[derive(Debug, Clone)]
pub struct Workers {
    pub account: Account,
    pub source: String,
}

/// The arguments of the main context's `user` directive in an Nginx config (`user www-data;`).
pub fn user_directive(conf: &str) -> Option<Vec<String>> {
    let mut depth = 0usize;
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for line in conf.lines() {
        let line = line.split('#').next().unwrap_or_default();
        for c in line.chars().chain(std::iter::once('\n')) {
            match c {
                '{' | '}' | ';' => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    if c == ';' && depth == 0 && words.first().is_some_and(|w| w == "user") {
                        return Some(words[1..].to_vec());
                    }
                    match c {
                        '{' => depth += 1,
                        '}' => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                    words.clear();
                }
                c if c.is_whitespace() => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
    }
    None
}

/// `--user=`, `--group=` and `--conf-path=` from `nginx -V` (it prints to stderr).
fn build_option(version: &str, name: &str) -> Option<String> {
    let key = format!("--{name}=");
    version.split_whitespace().find_map(|w| w.strip_prefix(key.as_str())).map(str::to_owned)
}

async fn read_text(host: &dyn Host, path: &Path) -> Option<String> {
    host.read_file(path).await.ok().flatten().map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// `Uid:`, `Gid:` and `Groups:` of a process, from `/proc/<pid>/status`.
fn proc_credentials(status: &str) -> Option<(u32, u32, Vec<u32>)> {
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    // The effective ids (second column) are the ones the kernel checks.
    let second = |s: &str| s.split_whitespace().nth(1).and_then(|x| x.parse().ok());
    let uid = second(field("Uid:")?)?;
    let gid = second(field("Gid:")?)?;
    let groups = field("Groups:").unwrap_or_default().split_whitespace().filter_map(|g| g.parse().ok()).collect();
    Some((uid, gid, groups))
}

/// The credentials of a running worker of the master in `pid_file`, if Nginx runs.
async fn live_workers(host: &dyn Host, pid_file: &Path) -> Option<Workers> {
    let master = read_text(host, pid_file).await?.trim().parse::<u32>().ok()?;
    if !host.process_alive(master).await.ok()? {
        return None;
    }
    let cancel = CancellationToken::new();
    let out = host.run(&Command::new("pgrep").arg("-P").arg(master.to_string()), &cancel, None).await.ok()?;
    let worker: u32 = out.stdout_str().lines().find_map(|l| l.trim().parse().ok())?;
    let status = read_text(host, &PathBuf::from(format!("/proc/{worker}/status"))).await?;
    let (uid, gid, mut groups) = proc_credentials(&status)?;
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    let name = match host.account(&UserRef::Uid(uid), Some(gid)).await {
        Ok(Some(a)) => a.name,
        _ => format!("uid {uid}"),
    };
    Some(Workers {
        account: Account { name, uid, gid, groups },
        source: format!("the running workers of Nginx (master pid {master}, from {})", pid_file.display()),
    })
}

/// The credentials of Nginx's running master (from `/proc`), if Nginx runs: who loads the TLS certificate and
/// key at a reload.
pub async fn live_master(host: &dyn Host, pid_file: &Path) -> Option<Workers> {
    let master = read_text(host, pid_file).await?.trim().parse::<u32>().ok()?;
    if !host.process_alive(master).await.ok()? {
        return None;
    }
    let status = read_text(host, &PathBuf::from(format!("/proc/{master}/status"))).await?;
    let (uid, gid, mut groups) = proc_credentials(&status)?;
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    let name = match host.account(&UserRef::Uid(uid), Some(gid)).await {
        Ok(Some(a)) => a.name,
        _ => format!("uid {uid}"),
    };
    Some(Workers {
        account: Account { name, uid, gid, groups },
        source: format!("the running master of Nginx (pid {master}, from {})", pid_file.display()),
    })
}

/// Who the workers run as (see the module doc), or why that cannot be told yet.
pub async fn workers(ngx: &Nginx, host: &dyn Host, provided_by: Option<&str>) -> Result<Workers, Finding> {
    if let Some(live) = live_workers(host, &ngx.pid_file).await {
        return Ok(live);
    }
    let cancel = CancellationToken::new();
    let mut version = Command::new(ngx.nginx[0].clone()).args(ngx.nginx[1..].iter().cloned()).arg("-V");
    version.kill_grace = std::time::Duration::from_secs(1);
    let version = host.run(&version, &cancel, None).await.map(|o| o.stderr_str()).unwrap_or_default();
    if !nix::unistd::geteuid().is_root() {
        let me = host.account(&UserRef::Uid(nix::unistd::geteuid().as_raw()), None).await.ok().flatten();
        if let Some(me) = me {
            return Ok(Workers {
                source: "zdd's own user: Nginx is not running, and a master zdd starts cannot switch users".into(),
                account: me,
            });
        }
    }
    let conf = ngx
        .nginx_conf
        .clone()
        .or_else(|| build_option(&version, "conf-path").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/etc/nginx/nginx.conf"));
    let text = read_text(host, &conf).await;
    let directive = text.as_deref().and_then(user_directive).filter(|args| !args.is_empty());
    let from_directive = directive.is_some();
    let (user, group, source) = match directive {
        Some(args) => {
            (args[0].clone(), args.get(1).cloned(), format!("`user {};` in {}", args.join(" "), conf.display()))
        }
        _ if text.is_none() && provided_by.is_some() => {
            return Err(Finding::warning(
                Code::PreflightNginxUser,
                format!(
                    "cannot tell yet which user Nginx's workers run as: {} is written by step `{}`",
                    conf.display(),
                    provided_by.unwrap_or_default()
                ),
                "the switch checks the running workers again before it moves traffic",
            ));
        }
        _ => {
            let user = build_option(&version, "user").unwrap_or_else(|| "nobody".to_owned());
            let what = if text.is_some() { "has no `user` directive" } else { "does not exist" };
            let source = format!("the build's default user (`nginx -V`): {} {what}", conf.display());
            (user, build_option(&version, "group"), source)
        }
    };
    let mut gid = None;
    let group = match group {
        Some(g) => Some(g),
        // `user x;` means group x. The build's default group for `nobody` is `nobody`, or `nogroup` where
        // there is no such group (Debian).
        None if from_directive => Some(user.clone()),
        None if user == "nobody" => match host.group_id("nobody").await {
            Ok(Some(_)) => Some("nobody".to_owned()),
            _ => Some("nogroup".to_owned()),
        },
        None => None,
    };
    if let Some(g) = &group {
        gid = host.group_id(g).await.ok().flatten();
    }
    match host.account(&UserRef::Name(user.clone()), gid).await {
        Ok(Some(account)) => Ok(Workers { account, source }),
        _ => Err(Finding::error(
            Code::PreflightNginxUser,
            format!("Nginx's workers would run as `{user}`, and this machine has no such user"),
            format!("create the user, or set `user` in {} to one that exists", conf.display()),
        )
        .evidence(format!("from {source}"))),
    }
}

/// Check that `workers` can reach `path` (`need`): `None` when they can.
pub async fn check(host: &dyn Host, workers: &Workers, path: &Path, need: Need, what: &str) -> Option<Finding> {
    check_as(host, "workers", workers, path, need, what).await
}

/// [`check`] for Nginx's `role` (`workers`, or `master` for the files it loads itself).
pub async fn check_as(
    host: &dyn Host,
    role: &str,
    workers: &Workers,
    path: &Path,
    need: Need,
    what: &str,
) -> Option<Finding> {
    let mut stats = std::collections::BTreeMap::new();
    // Stat every ancestor first (the walk itself is synchronous and pure).
    let mut walked = PathBuf::new();
    for part in path.components() {
        walked.push(part.as_os_str());
        if let Ok(Some(st)) = host.stat(&walked).await {
            stats.insert(walked.clone(), st);
        }
    }
    let Reach::No(blocked) = access::reach(path, &workers.account, need, |p| stats.get(p).copied()) else {
        return None;
    };
    let owner = |uid: u32| nix::unistd::User::from_uid(uid.into()).ok().flatten().map_or(uid.to_string(), |u| u.name);
    let group = |gid: u32| nix::unistd::Group::from_gid(gid.into()).ok().flatten().map_or(gid.to_string(), |g| g.name);
    let verb = match need {
        Need::Read => "read",
        Need::Enter => "reach",
        Need::Connect => "connect to",
    };
    Some(
        Finding::error(
            Code::PreflightUnreachable,
            format!(
                "Nginx's {role} (user `{}`) cannot {verb} {what} {}: {} blocks them",
                workers.account.name,
                path.display(),
                blocked.path.display()
            ),
            format!(
                "`{}` (lets every {} user through), or choose a `root` under a directory `{}` can enter (e.g. /srv)",
                access::chmod_fix(&blocked),
                if blocked.class == "other" { "other" } else { blocked.class },
                workers.account.name
            ),
        )
        .evidence(format!(
            "{} is {} ({:o}), owner {}:{}; `{}` is {} and needs `{}` there",
            blocked.path.display(),
            access::mode_string(&blocked.stat),
            blocked.stat.mode,
            owner(blocked.stat.uid),
            group(blocked.stat.gid),
            workers.account.name,
            match blocked.class {
                "owner" => "the owner",
                "group" => "in the group",
                _ => "neither owner nor in the group",
            },
            blocked.missing
        ))
        .evidence(match role {
            "workers" => format!("workers' user from {}", workers.source),
            _ => format!("{role}'s user from {}", workers.source),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_main_contexts_user_only() {
        assert_eq!(user_directive("user www-data;\nworker_processes auto;"), Some(vec!["www-data".to_owned()]));
        assert_eq!(
            user_directive("# user nobody;\n  user  nginx  nginx ;"),
            Some(vec!["nginx".into(), "nginx".into()])
        );
        assert_eq!(user_directive("events { }\nhttp { server { user x; } }"), None);
        assert_eq!(user_directive("worker_processes 2;\npid /x.pid;"), None);
    }

    #[test]
    fn reads_the_effective_ids_of_a_process() {
        let status = "Name:\tnginx\nUid:\t0\t33\t33\t33\nGid:\t0\t33\t33\t33\nGroups:\t33 4 \n";
        assert_eq!(proc_credentials(status), Some((33, 33, vec![33, 4])));
    }

    #[test]
    fn reads_build_options() {
        let v = "nginx version: nginx/1.22.1\nconfigure arguments: --prefix=/usr/share/nginx --conf-path=/etc/nginx/nginx.conf";
        assert_eq!(build_option(v, "conf-path").as_deref(), Some("/etc/nginx/nginx.conf"));
        assert_eq!(build_option(v, "user"), None);
    }
}
