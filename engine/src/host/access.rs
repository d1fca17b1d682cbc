//! Can another user reach a path? The Unix permission walk a preflight does for a proxy's worker user: every
//! directory from `/` down needs the search (`x`) bit for that user, and the last one may need `r` too.
//!
//! The walk is pure (it asks a `stat` function for each component), so it is tested without creating users.
//! It follows the classic rules: root passes; the owner's bits apply to the owner alone (even when the group or
//! other bits would allow more); then the group's bits to members of the file's group; then the other bits. POSIX
//! ACLs are not read: a path an ACL opens up is reported as blocked, with the mode that was seen.

use std::path::{Component, Path, PathBuf};

/// What the walk needs to know about one path component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// The permission bits (`0o700`), without the file type.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub is_dir: bool,
}

/// A user as the kernel checks it: uid, primary gid and supplementary groups, with the names for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Every group the user's processes carry (the primary one included).
    pub groups: Vec<u32>,
}

/// What the user must be able to do at the end of the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Enter every directory of the path, the last included (to connect to a socket in it).
    Enter,
    /// Enter every directory and list/read the last one (to serve files from it).
    Read,
    /// Enter every directory and write the last component, a socket (to `connect()` to it).
    Connect,
}

/// Where the walk stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The component that refuses the user.
    pub path: PathBuf,
    pub stat: FileStat,
    /// The permission that is missing: `x` (search) or `r` (read).
    pub missing: char,
    /// Which of the mode's classes applied to the user: `owner`, `group` or `other`.
    pub class: &'static str,
}

/// The result of a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Every component that exists lets the user through; `missing` is the first one that does not exist yet
    /// (a step will create it), if any.
    Yes {
        missing: Option<PathBuf>,
    },
    No(Blocked),
}

/// `rwx` for the three bits of one class.
fn bits(mode: u32, shift: u32) -> (bool, bool, bool) {
    let b = (mode >> shift) & 0o7;
    (b & 4 != 0, b & 2 != 0, b & 1 != 0)
}

/// The class of `stat` that applies to `who`, and its `rwx` bits.
fn class_of(stat: &FileStat, who: &Account) -> (&'static str, (bool, bool, bool)) {
    if stat.uid == who.uid {
        ("owner", bits(stat.mode, 6))
    } else if stat.gid == who.gid || who.groups.contains(&stat.gid) {
        ("group", bits(stat.mode, 3))
    } else {
        ("other", bits(stat.mode, 0))
    }
}

/// Walk `path` (absolute) from `/` for `who`. `stat` returns `None` for a component that does not exist.
pub fn reach(path: &Path, who: &Account, need: Need, mut stat: impl FnMut(&Path) -> Option<FileStat>) -> Reach {
    let mut walked = PathBuf::new();
    let parts: Vec<Component<'_>> = path.components().collect();
    for (i, part) in parts.iter().enumerate() {
        match part {
            Component::CurDir => continue,
            Component::ParentDir => {
                walked.pop();
                continue;
            }
            other => walked.push(other.as_os_str()),
        }
        let Some(st) = stat(&walked) else {
            return Reach::Yes { missing: Some(walked) };
        };
        if who.uid == 0 {
            continue;
        }
        let last = i + 1 == parts.len();
        let (class, (r, w, x)) = class_of(&st, who);
        if !st.is_dir {
            if need == Need::Connect && last && !w {
                return Reach::No(Blocked { path: walked, stat: st, missing: 'w', class });
            }
            continue;
        }
        if !x {
            return Reach::No(Blocked { path: walked, stat: st, missing: 'x', class });
        }
        if need == Need::Read && last && !r {
            return Reach::No(Blocked { path: walked, stat: st, missing: 'r', class });
        }
    }
    Reach::Yes { missing: None }
}

/// `drwx------` for a directory's mode (`-` first for anything else).
pub fn mode_string(stat: &FileStat) -> String {
    let mut s = String::with_capacity(10);
    s.push(if stat.is_dir { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        let (r, w, x) = bits(stat.mode, shift);
        s.push(if r { 'r' } else { '-' });
        s.push(if w { 'w' } else { '-' });
        s.push(if x { 'x' } else { '-' });
    }
    s
}

/// The smallest `chmod` that lets `who` through `blocked` (`chmod o+x /root`).
pub fn chmod_fix(blocked: &Blocked) -> String {
    let who = match blocked.class {
        "owner" => 'u',
        "group" => 'g',
        _ => 'o',
    };
    format!("chmod {who}+{} {}", blocked.missing, blocked.path.display())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn dir(mode: u32, uid: u32, gid: u32) -> FileStat {
        FileStat { mode, uid, gid, is_dir: true }
    }

    fn nobody() -> Account {
        Account { name: "nobody".into(), uid: 65534, gid: 65534, groups: vec![65534] }
    }

    fn tree(entries: &[(&str, FileStat)]) -> BTreeMap<PathBuf, FileStat> {
        entries.iter().map(|(p, s)| (PathBuf::from(p), *s)).collect()
    }

    #[test]
    fn a_mode_700_home_blocks_other_users_and_names_itself() {
        let t = tree(&[
            ("/", dir(0o755, 0, 0)),
            ("/root", dir(0o700, 0, 0)),
            ("/root/zdd", dir(0o755, 0, 0)),
            ("/root/zdd/run", dir(0o755, 0, 0)),
        ]);
        let got = reach(Path::new("/root/zdd/run"), &nobody(), Need::Enter, |p| t.get(p).copied());
        let Reach::No(blocked) = got else { panic!("expected blocked, got {got:?}") };
        assert_eq!(blocked.path, PathBuf::from("/root"));
        assert_eq!(blocked.class, "other");
        assert_eq!(mode_string(&blocked.stat), "drwx------");
        assert_eq!(chmod_fix(&blocked), "chmod o+x /root");
        // Root itself, and the owner, pass.
        let root = Account { name: "root".into(), uid: 0, gid: 0, groups: vec![0] };
        assert_eq!(
            reach(Path::new("/root/zdd/run"), &root, Need::Enter, |p| t.get(p).copied()),
            Reach::Yes { missing: None }
        );
    }

    #[test]
    fn the_owner_class_wins_over_group_and_other() {
        let t = tree(&[("/", dir(0o755, 0, 0)), ("/srv", dir(0o077, 65534, 0))]);
        let Reach::No(b) = reach(Path::new("/srv"), &nobody(), Need::Enter, |p| t.get(p).copied()) else {
            panic!("the owner's bits say no")
        };
        assert_eq!((b.class, chmod_fix(&b)), ("owner", "chmod u+x /srv".to_owned()));
    }

    #[test]
    fn group_membership_opens_a_directory() {
        let t = tree(&[("/", dir(0o755, 0, 0)), ("/srv", dir(0o750, 0, 33))]);
        let mut www = nobody();
        assert!(matches!(reach(Path::new("/srv"), &www, Need::Enter, |p| t.get(p).copied()), Reach::No(_)));
        www.groups.push(33);
        assert_eq!(reach(Path::new("/srv"), &www, Need::Enter, |p| t.get(p).copied()), Reach::Yes { missing: None });
    }

    #[test]
    fn reading_needs_r_on_the_last_directory_only() {
        let t = tree(&[("/", dir(0o755, 0, 0)), ("/srv", dir(0o711, 0, 0)), ("/srv/static", dir(0o711, 0, 0))]);
        let got = reach(Path::new("/srv/static"), &nobody(), Need::Read, |p| t.get(p).copied());
        let Reach::No(b) = got else { panic!("static dir without r") };
        assert_eq!((b.path, b.missing), (PathBuf::from("/srv/static"), 'r'));
        assert_eq!(
            reach(Path::new("/srv/static"), &nobody(), Need::Enter, |p| t.get(p).copied()),
            Reach::Yes { missing: None }
        );
    }

    #[test]
    fn connecting_needs_w_on_the_socket() {
        let sock = FileStat { mode: 0o755, uid: 0, gid: 0, is_dir: false };
        let t = tree(&[("/", dir(0o755, 0, 0)), ("/run", dir(0o755, 0, 0)), ("/run/b.sock", sock)]);
        let Reach::No(b) = reach(Path::new("/run/b.sock"), &nobody(), Need::Connect, |p| t.get(p).copied()) else {
            panic!("a 755 socket refuses other users' connect()")
        };
        assert_eq!((chmod_fix(&b), mode_string(&b.stat)), ("chmod o+w /run/b.sock".to_owned(), "-rwxr-xr-x".into()));
    }

    #[test]
    fn a_path_not_created_yet_is_checked_as_far_as_it_exists() {
        let t = tree(&[("/", dir(0o755, 0, 0)), ("/srv", dir(0o755, 0, 0))]);
        assert_eq!(
            reach(Path::new("/srv/shop/run"), &nobody(), Need::Enter, |p| t.get(p).copied()),
            Reach::Yes { missing: Some(PathBuf::from("/srv/shop")) }
        );
    }
}
