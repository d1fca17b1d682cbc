//! The remote side of an SSH host: the command lines sent to sshd and how their failures read.
//!
//! sshd hands a command line to the user's login shell, so every word is quoted here with [`shell_quote`] and
//! the work is done by fixed `/bin/sh` scripts that take their inputs as positional arguments: no value is ever
//! spliced into script text. The scripts speak in exit codes ([`ABSENT`] for "not there", which the file
//! operations turn into `None`/`false`) and in `LC_ALL=C` error messages on stderr, read back by
//! [`remote_io_error`] into an `io::Error` whose kind is the one a local call would have given.

use std::collections::BTreeMap;
use std::path::Path;

use super::super::{Command, shell_quote};

/// The exit code of a file-operation script for "the path (or user, group, process) is not there".
pub(super) const ABSENT: i32 = 3;

/// What a file-operation script prints before its output: anything the login shell's startup files printed
/// comes before it and is not the operation's (bash reads `~/.bashrc` even for sshd's non-interactive commands).
const OUTPUT_MARKER: &[u8] = b"zdd-output\n";

/// The first stdout line of a started command: `zdd-pid <pid> <start>` (then the program's own output follows).
/// `<start>` is when it started, in clock ticks since the host booted (field 22 of `/proc/<pid>/stat`), for
/// the process log: it tells the group from a later one with a recycled id. It is empty without `/proc`.
pub(super) const PID_HEADER: &str = "zdd-pid ";

/// The first stdout line when a command could not be started: `zdd-spawn <ERRNO-NAME> <message>`.
pub(super) const SPAWN_HEADER: &str = "zdd-spawn ";

/// Before a command runs: enter its directory, check its program can be executed, so that a missing program
/// or directory reads as a spawn failure (as it does on this machine) and not as the program's exit code 127.
/// `$1` is the directory (empty for none); it is shifted away, `"$@"` is the program and its arguments.
const PRELUDE: &str = r#"if [ -n "$1" ] && ! cd "$1" 2>/dev/null; then
  if [ -d "$1" ]; then echo "zdd-spawn EACCES cannot enter directory $1"; else echo "zdd-spawn ENOENT no directory $1"; fi
  exit 127
fi
shift
case $1 in
*/*) if [ ! -e "$1" ]; then echo "zdd-spawn ENOENT $1: no such file"; exit 127
     elif [ -d "$1" ] || [ ! -x "$1" ]; then echo "zdd-spawn EACCES $1: not executable"; exit 127; fi ;;
*) command -v "$1" >/dev/null 2>&1 || { echo "zdd-spawn ENOENT $1: not found in PATH"; exit 127; } ;;
esac
"#;

/// A command that reports its pid, then becomes the program. sshd starts every non-pty command in a new session
/// (`setsid`), and the login shell `exec`s this shell, so `$$` is the session's and process group's id: what
/// cancellation signals (`kill -TERM -- -PID`). The function's own positional parameters split the stat line,
/// so the program's words are untouched.
const RUN: &str = r#"zdd_ticks() { zdd_ticks=${20}; }
{ read -r zdd_stat </proc/$$/stat; } 2>/dev/null && zdd_ticks ${zdd_stat##*) }
echo "zdd-pid $$ $zdd_ticks"; exec "$@""#;

/// A command detached in its own session (`setsid`), immune to hangups, output appended to a log created 0640,
/// reporting its pid. `$1` is the log (shifted away before the prelude's directory).
const DETACH: &str = r#"(umask 027; : >>"$log") || exit 1
setsid nohup "$@" </dev/null >>"$log" 2>&1 &
echo "zdd-pid $!""#;

/// The whole command line for [`Host::run`](super::super::Host::run).
pub(super) fn run_line(cmd: &Command) -> String {
    let script = format!("{PRELUDE}{RUN}");
    launch_line(&cmd.env, &script, &[dir_word(cmd.cwd.as_deref())], cmd)
}

/// The whole command line for [`Host::spawn_detached`](super::super::Host::spawn_detached).
pub(super) fn detach_line(cmd: &Command, log: &str) -> String {
    let script = format!("log=$1; shift\n{PRELUDE}{DETACH}");
    launch_line(&cmd.env, &script, &[log.to_owned(), dir_word(cmd.cwd.as_deref())], cmd)
}

fn dir_word(dir: Option<&Path>) -> String {
    dir.map(|d| d.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `exec [env K=V ...] /bin/sh -c SCRIPT zdd WORDS... PROGRAM ARGS...`, every word quoted. `exec` keeps the
/// login shell's pid (the session leader) through to the program.
fn launch_line(env: &BTreeMap<String, String>, script: &str, words: &[String], cmd: &Command) -> String {
    let mut line = vec!["exec".to_owned()];
    if !env.is_empty() {
        line.push("env".to_owned());
        line.extend(env.iter().map(|(k, v)| shell_quote(&format!("{k}={v}"))));
    }
    line.extend(["/bin/sh".to_owned(), "-c".to_owned(), shell_quote(script), "zdd".to_owned()]);
    line.extend(words.iter().map(|w| shell_quote(w)));
    line.push(shell_quote(&cmd.program));
    line.extend(cmd.args.iter().map(|a| shell_quote(a)));
    line.join(" ")
}

/// A file-operation script with its arguments, as one command line. Messages are in the C locale so that
/// [`remote_io_error`] can read them.
pub(super) fn op_line(script: &str, args: &[&str]) -> String {
    let script = format!("LC_ALL=C; export LC_ALL\nprintf 'zdd-output\\n'\n{script}");
    let mut line =
        vec!["exec".to_owned(), "/bin/sh".to_owned(), "-c".to_owned(), shell_quote(&script), "zdd".to_owned()];
    line.extend(args.iter().map(|a| shell_quote(a)));
    line.join(" ")
}

/// A file operation's own output: what follows [`OUTPUT_MARKER`], or `None` if the script never ran.
pub(super) fn after_output_marker(stdout: &[u8]) -> Option<&[u8]> {
    let at = stdout.windows(OUTPUT_MARKER.len()).position(|w| w == OUTPUT_MARKER)?;
    Some(&stdout[at + OUTPUT_MARKER.len()..])
}

/// A path as a script argument: one that starts with `-` is made `./-...` so no tool reads it as an option.
pub(super) fn path_arg(path: &Path) -> Result<String, std::io::Error> {
    let Some(text) = path.to_str() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path is not UTF-8, which a remote command line cannot carry",
        ));
    };
    Ok(if text.starts_with('-') { format!("./{text}") } else { text.to_owned() })
}

/// The scripts of the file operations. Each takes its paths as `$1`, `$2`, ...
pub(super) mod ops {
    /// `$1` path: its bytes on stdout, or [`ABSENT`](super::ABSENT).
    pub(in super::super) const READ: &str = r#"[ -e "$1" ] || exit 3
exec cat -- "$1""#;

    /// `$1` target, `$2` temporary sibling, `$3` octal mode; content on stdin. Readers see the old file or the
    /// new one: the temporary file is written (never more open than 0600 until its mode is set), synced, then
    /// renamed over the target, and the directory is synced.
    pub(in super::super) const WRITE: &str = r#"dir=$(dirname -- "$1")
[ -d "$dir" ] || { echo "$dir: No such file or directory" >&2; exit 1; }
umask 077
if cat >"$2" && chmod "$3" "$2" && { sync -- "$2" 2>/dev/null || sync; } && mv -f -- "$2" "$1"; then
  sync -- "$dir" 2>/dev/null || sync
  exit 0
fi
rm -f -- "$2"
exit 1"#;

    /// `$1` link, `$2` temporary sibling, `$3` target: a new link beside the old one, renamed over it.
    pub(in super::super) const SWAP_SYMLINK: &str = r#"dir=$(dirname -- "$1")
if ln -s -- "$3" "$2" && mv -T -f -- "$2" "$1"; then
  sync -- "$dir" 2>/dev/null || sync
  exit 0
fi
rm -f -- "$2"
exit 1"#;

    /// `$1` path: where the link points, or [`ABSENT`](super::ABSENT) when it is not a link.
    pub(in super::super) const READ_LINK: &str = r#"[ -L "$1" ] || exit 3
exec readlink -- "$1""#;

    /// `$1` path: 0 when it (or a dangling link) exists, [`ABSENT`](super::ABSENT) when not.
    pub(in super::super) const EXISTS: &str = r#"[ -e "$1" ] || [ -L "$1" ] || exit 3"#;

    pub(in super::super) const CREATE_DIR_ALL: &str = r#"exec mkdir -p -- "$1""#;

    /// Links are removed, not followed.
    pub(in super::super) const REMOVE_ALL: &str = r#"exec rm -rf -- "$1""#;

    /// `$1` directory: entry names, each ended by a NUL (names may hold newlines).
    pub(in super::super) const LIST_DIR: &str = r#"[ -e "$1" ] || [ -L "$1" ] || exit 3
[ -d "$1" ] || { echo "$1: Not a directory" >&2; exit 1; }
exec find "$1/" -mindepth 1 -maxdepth 1 -printf '%f\0'"#;

    /// `$1` path (links followed): `MODE UID GID TYPE`, mode in octal.
    pub(in super::super) const STAT: &str = r#"[ -e "$1" ] || exit 3
exec stat -L -c '%a %u %g %F' -- "$1""#;

    /// `$1` pid: 0 while it runs, [`ABSENT`](super::ABSENT) when gone or a zombie (exited, not yet reaped).
    pub(in super::super) const PROCESS_ALIVE: &str = r#"if [ -r "/proc/$1/stat" ]; then
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || exit 3
  case $state in Z*|"") exit 3 ;; esac
  exit 0
fi
kill -0 "$1" 2>/dev/null || exit 3"#;

    /// `$1` signal name without `SIG` (or `0`), `$2` pid.
    pub(in super::super) const SIGNAL: &str = r#"if [ "$1" = 0 ]; then kill -0 "$2"; else kill -s "$1" "$2"; fi"#;

    /// `$1` user name or uid: the passwd entry, then the ids of its groups (`id -G`), one line each.
    pub(in super::super) const ACCOUNT: &str = r#"entry=$(getent passwd "$1") || exit 3
printf '%s\n' "$entry"
id -G -- "${entry%%:*}""#;

    /// `$1` group name: the group entry.
    pub(in super::super) const GROUP: &str = r#"entry=$(getent group "$1") || exit 3
printf '%s\n' "$entry""#;

    /// `$1` process group id, `$2` grace in tenths of a second: TERM the group, wait up to the grace for it to
    /// go, KILL what is left, then wait (boundedly, 5 s) until none of it runs. Members that exited and wait for
    /// their reaper (zombies) count as gone. (`kill -SIG -PID`: dash's `kill` takes no `--`.)
    pub(in super::super) const TERMINATE_GROUP: &str = r#"group=$1
alive() {
  if [ -d /proc/self ]; then
    for f in /proc/[0-9]*/stat; do
      { read -r line <"$f"; } 2>/dev/null || continue
      set -- ${line##*) }
      [ "$3" = "$group" ] && [ "$1" != Z ] && return 0
    done
    return 1
  fi
  kill -0 "-$group" 2>/dev/null
}
kill -TERM "-$group" 2>/dev/null || exit 0
i=0
while alive; do
  if [ "$i" -ge "$2" ]; then
    kill -KILL "-$group" 2>/dev/null
    j=0
    while alive && [ "$j" -lt 50 ]; do sleep 0.1; j=$((j+1)); done
    exit 0
  fi
  sleep 0.1
  i=$((i+1))
done"#;

    /// `$1` process group id: KILL it (a run whose caller went away).
    pub(in super::super) const KILL_GROUP: &str = r#"kill -KILL "-$1" 2>/dev/null; exit 0"#;

    /// `$1` spawn token: `PID TICKS` for each process whose environment holds `ZDD_SPAWN=$1` and that leads its
    /// own session as sshd started it (its parent is an sshd): a command of zdd's whose header never reached
    /// zdd. A daemon that called `setsid` leads a session too, but its parent is not sshd, and is left alone.
    pub(in super::super) const FIND_SPAWNED: &str = r#"zdd_fields() { zdd_ppid=$2; zdd_sid=$4; zdd_ticks=${20}; }
for zdd_dir in /proc/[0-9]*; do
  zdd_pid=${zdd_dir#/proc/}
  tr '\0' '\n' <"$zdd_dir/environ" 2>/dev/null | grep -qxF "ZDD_SPAWN=$1" || continue
  { read -r zdd_stat <"$zdd_dir/stat"; } 2>/dev/null || continue
  zdd_fields ${zdd_stat##*) }
  [ "$zdd_sid" = "$zdd_pid" ] || continue
  { read -r zdd_parent <"/proc/$zdd_ppid/comm"; } 2>/dev/null || continue
  case $zdd_parent in sshd*) echo "$zdd_pid $zdd_ticks" ;; esac
done
exit 0"#;

    /// `zdd recover`'s check before [`TERMINATE_GROUP`]: `$3` must be when the group's leader started (field
    /// 22 of its stat), else the id is another group's now (or none's) and nothing is signalled.
    pub(in super::super) const LEADER_STARTED_AT: &str = r#"zdd_ticks() { zdd_ticks=${20}; }
{ read -r zdd_stat <"/proc/$1/stat"; } 2>/dev/null || exit 3
zdd_ticks ${zdd_stat##*) }
[ "$zdd_ticks" = "$3" ] || exit 3
"#;
}

/// An `io::Error` from a remote tool's message (`cat: /x: Permission denied`), with the kind the same failure
/// has on this machine: the message names the path, and NotFound/PermissionDenied stay recognisable.
pub(super) fn remote_io_error(stderr: &[u8], code: Option<i32>) -> std::io::Error {
    let text = String::from_utf8_lossy(stderr).trim().to_owned();
    let errno = errno_of_message(&text);
    let text = if text.is_empty() {
        code.map_or_else(|| "the remote command was killed".to_owned(), |c| format!("the remote command exited {c}"))
    } else {
        text
    };
    match errno {
        Some(errno) => std::io::Error::new(std::io::Error::from_raw_os_error(errno).kind(), text),
        None => std::io::Error::other(text),
    }
}

/// The errno a C-locale message stands for (`strerror` texts, and dash's own `Directory nonexistent`).
fn errno_of_message(text: &str) -> Option<i32> {
    const MESSAGES: &[(&str, nix::errno::Errno)] = &[
        ("No such file or directory", nix::errno::Errno::ENOENT),
        ("Directory nonexistent", nix::errno::Errno::ENOENT),
        ("Permission denied", nix::errno::Errno::EACCES),
        ("Operation not permitted", nix::errno::Errno::EPERM),
        ("Not a directory", nix::errno::Errno::ENOTDIR),
        ("Is a directory", nix::errno::Errno::EISDIR),
        ("No such process", nix::errno::Errno::ESRCH),
        ("Read-only file system", nix::errno::Errno::EROFS),
        ("No space left on device", nix::errno::Errno::ENOSPC),
        ("File exists", nix::errno::Errno::EEXIST),
        ("Directory not empty", nix::errno::Errno::ENOTEMPTY),
    ];
    MESSAGES.iter().find(|(message, _)| text.contains(message)).map(|(_, errno)| *errno as i32)
}

/// The `io::Error` of a spawn header (`zdd-spawn ENOENT no directory /srv/x`).
pub(super) fn spawn_error(header: &str) -> std::io::Error {
    let (name, message) = header.split_once(' ').unwrap_or((header, ""));
    let kind = match name {
        "ENOENT" => std::io::ErrorKind::NotFound,
        "EACCES" => std::io::ErrorKind::PermissionDenied,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a command line the way sshd does (the login shell gets it as one string), here with `/bin/sh`.
    fn as_sshd_would(line: &str) -> std::process::Output {
        std::process::Command::new("/bin/sh").arg("-c").arg(line).output().unwrap()
    }

    #[test]
    fn a_run_line_reports_its_pid_then_passes_words_intact() {
        let cmd =
            Command::new("printf").args(["%s|", "a b", "$HOME;", "it's", "`x`", "\"q\"", "*", "\n"]).env("K", "v w");
        let out = as_sshd_would(&run_line(&cmd));
        let text = String::from_utf8(out.stdout).unwrap();
        let (header, rest) = text.split_once('\n').unwrap();
        let words: Vec<&str> = header.strip_prefix(PID_HEADER).unwrap().split(' ').collect();
        assert!(words.len() == 2 && words.iter().all(|w| w.parse::<u64>().is_ok()), "pid and start: {header}");
        assert_eq!(rest, "a b|$HOME;|it's|`x`|\"q\"|*|\n|");
        let env = as_sshd_would(&run_line(&Command::new("sh").args(["-c", "echo \"$K\""]).env("K", "v w")));
        assert!(String::from_utf8_lossy(&env.stdout).ends_with("\nv w\n"));
    }

    #[test]
    fn a_missing_program_or_directory_is_a_spawn_header() {
        let out = as_sshd_would(&run_line(&Command::new("/nonexistent/zdd")));
        let text = String::from_utf8(out.stdout).unwrap();
        let header = text.trim().strip_prefix(SPAWN_HEADER).unwrap();
        assert_eq!(spawn_error(header).kind(), std::io::ErrorKind::NotFound);
        let out = as_sshd_would(&run_line(&Command::new("true").cwd("/nonexistent/dir")));
        assert!(String::from_utf8(out.stdout).unwrap().starts_with("zdd-spawn ENOENT no directory"));
        let out = as_sshd_would(&run_line(&Command::new("zdd-no-such-program")));
        assert!(String::from_utf8(out.stdout).unwrap().starts_with("zdd-spawn ENOENT"));
    }

    #[test]
    fn messages_keep_their_kind() {
        let e = remote_io_error(b"cat: /x: Permission denied\n", Some(1));
        assert_eq!(
            (e.kind(), e.to_string()),
            (std::io::ErrorKind::PermissionDenied, "cat: /x: Permission denied".into())
        );
        assert_eq!(
            remote_io_error(b"sh: 1: cannot create /a/b: Directory nonexistent", Some(2)).kind(),
            std::io::ErrorKind::NotFound
        );
        assert_eq!(remote_io_error(b"", Some(4)).to_string(), "the remote command exited 4");
        assert_eq!(
            remote_io_error(b"kill: Operation not permitted", Some(1)).kind(),
            std::io::ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn what_startup_files_print_is_not_an_operation_output() {
        let line = op_line(ops::READ_LINK, &["/nonexistent"]);
        let noisy = as_sshd_would(&format!("echo welcome; {line}"));
        assert_eq!(noisy.status.code(), Some(ABSENT));
        assert_eq!(after_output_marker(&noisy.stdout), Some(&b""[..]));
        assert_eq!(after_output_marker(b"motd\nzdd-output\nbytes\nzdd-output\n"), Some(&b"bytes\nzdd-output\n"[..]));
        assert_eq!(after_output_marker(b"nothing"), None);
    }

    #[test]
    fn paths_never_read_as_options() {
        assert_eq!(path_arg(Path::new("-rf")).unwrap(), "./-rf");
        assert_eq!(path_arg(Path::new("/srv/a b")).unwrap(), "/srv/a b");
    }
}
