//! The plan's fleet: the SSH hosts it names, by role (`hosts "web" "web1" "web2"`), the ssh config it reaches them
//! with (`ssh-config "deploy/ssh_config"`), and which host each step runs on (`host="web1"`, `role="web"`).
//!
//! ```kdl
//! var "hosts" "web1 deploy@10.0.0.5:2222"
//! hosts "web" "{{hosts}}"
//! hosts "lb" "lb1"
//! repeat "h" in="{{hosts}}" {
//!     step "build" kind="exec" host="{{h}}" { run "true" }
//! }
//! step "migrate" kind="exec" role="web" { needs "build"; run "true" }
//! ```
//!
//! - Each value of `hosts` is interpolated and split on whitespace, so a variable holding several destinations
//!   gives several hosts. A destination is `user@address[:port]` (see [`Destination`]).
//! - A role is declared once; a host appears once in a role, and may have several roles.
//! - A step's `host` must name a declared host; `role` names a role and means its first host (the role's
//!   primary: one place for work done once, such as migrating). A step with neither runs on this machine.
//!
//! Pure: nothing here connects anywhere; the run does that before the first step (see the CLI).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::host::Destination;
use crate::plan::raw::{RawNode, RawValue, Scalar};
use crate::plan::suggest::did_you_mean;
use crate::plan::validate::{missing_argument, no_block, single_node, wrong_type};
use crate::plan::vars::Interpolator;
use crate::source::Span;

/// The top-level node declaring a role's hosts.
pub const HOSTS: &str = "hosts";

/// The top-level node naming the ssh config file (`ssh -F`).
pub const SSH_CONFIG: &str = "ssh-config";

/// The SSH hosts a plan names, by role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fleet {
    /// In declaration order.
    pub roles: Vec<Role>,
    /// `ssh -F` this file (absolute), instead of `~/.ssh/config`.
    pub ssh_config: Option<PathBuf>,
}

/// A role and its hosts, in the order written (the first is the role's primary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub hosts: Vec<String>,
}

impl Fleet {
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// Every declared host once, in the order first declared.
    pub fn destinations(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for host in self.roles.iter().flat_map(|r| &r.hosts) {
            if !out.contains(&host.as_str()) {
                out.push(host);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }
}

/// Role names are plain words (they appear in messages and `role=` values).
fn valid_role(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

/// Read the `hosts` and `ssh-config` nodes.
pub fn fleet(
    hosts: &[&RawNode],
    ssh_config: &[&RawNode],
    base_dir: &Path,
    interp: &Interpolator<'_>,
    diags: &mut Diagnostics,
) -> Fleet {
    let mut fleet = Fleet { roles: Vec::new(), ssh_config: ssh_config_path(ssh_config, base_dir, interp, diags) };
    let mut role_spans: HashMap<String, Span> = HashMap::new();
    for node in hosts {
        no_block(node, diags);
        let Some((role_arg, values)) = node.args.split_first() else {
            diags.push(missing_argument(node, "`hosts` needs a role", "write `hosts \"web\" \"web1\" \"web2\"`"));
            continue;
        };
        let Scalar::Str(role) = &role_arg.value else {
            diags.push(wrong_type(role_arg, "a role name", "write the role in double quotes: `hosts \"web\" ...`"));
            continue;
        };
        if !valid_role(role) {
            diags.push(
                Diagnostic::error(Code::BadName, format!("`{role}` is not a valid role name"))
                    .at(role_arg.span, "not a plain word")
                    .help("name a role with letters, digits, `-` and `_`, e.g. `web` or `lb`"),
            );
            continue;
        }
        if let Some(first) = role_spans.get(role) {
            diags.push(
                Diagnostic::error(Code::DuplicateNode, format!("role `{role}` is declared twice"))
                    .at(role_arg.span, "declared again here")
                    .related(*first, "first declared here")
                    .help(format!("list every host of `{role}` in one `hosts \"{role}\" ...` node")),
            );
            continue;
        }
        role_spans.insert(role.clone(), role_arg.span);
        let hosts = role_hosts(role, values, interp, diags);
        if values.is_empty() {
            diags.push(missing_argument(
                node,
                &format!("role `{role}` lists no host"),
                &format!("write `hosts \"{role}\" \"web1\" \"deploy@10.0.0.5:2222\"`"),
            ));
        }
        fleet.roles.push(Role { name: role.clone(), hosts });
    }
    fleet
}

/// The destinations of one role: each value interpolated and split on whitespace, each parsed, none twice.
fn role_hosts(role: &str, values: &[RawValue], interp: &Interpolator<'_>, diags: &mut Diagnostics) -> Vec<String> {
    let mut hosts: Vec<(String, Span)> = Vec::new();
    for value in values {
        let Scalar::Str(text) = &value.value else {
            diags.push(wrong_type(value, "an SSH destination", "write destinations in double quotes"));
            continue;
        };
        let Some(rendered) = render(interp, text, value.span, diags) else { continue };
        let words: Vec<&str> = rendered.split_whitespace().collect();
        if words.is_empty() {
            diags.push(
                Diagnostic::error(Code::EmptyValue, format!("a host of role `{role}` is empty"))
                    .at(value.span, "no destination")
                    .help("give a destination such as `deploy@10.0.0.5:2222`, or a variable that holds some"),
            );
        }
        for word in words {
            if let Err(e) = Destination::parse(word) {
                diags.push(
                    Diagnostic::error(Code::BadHost, format!("`{word}` is not an SSH destination: {}", e.reason))
                        .at(value.span, "not `user@address[:port]`")
                        .help("write `user@address[:port]`, an address, or a `Host` of your ssh config"),
                );
                continue;
            }
            if let Some((_, first)) = hosts.iter().find(|(h, _)| h == word) {
                let d =
                    Diagnostic::error(Code::DuplicateHost, format!("host `{word}` is listed twice in role `{role}`"))
                        .at(value.span, "listed again here")
                        .help("list each host of a role once: a host in a role twice would be deployed twice");
                diags.push(if *first == value.span { d } else { d.related(*first, "first listed here") });
                continue;
            }
            hosts.push((word.to_owned(), value.span));
        }
    }
    hosts.into_iter().map(|(h, _)| h).collect()
}

fn ssh_config_path(
    nodes: &[&RawNode],
    base_dir: &Path,
    interp: &Interpolator<'_>,
    diags: &mut Diagnostics,
) -> Option<PathBuf> {
    let first = single_node(nodes, "ssh-config", diags)?;
    let Some(arg) = first.args.first() else {
        diags.push(missing_argument(first, "`ssh-config` needs a path", "write `ssh-config \"deploy/ssh_config\"`"));
        return None;
    };
    if let Some(extra) = first.args.get(1) {
        diags.push(
            Diagnostic::error(Code::ExtraArgument, "`ssh-config` takes one path")
                .at(extra.span, "extra argument")
                .help("write `ssh-config \"deploy/ssh_config\"`"),
        );
    }
    let Scalar::Str(text) = &arg.value else {
        diags.push(wrong_type(arg, "a path", "write the path in double quotes"));
        return None;
    };
    // Empty (an unset `ssh_config` variable): the user's own ssh config applies.
    let path = render(interp, text, arg.span, diags).filter(|p| !p.trim().is_empty())?;
    Some(crate::plan::load::normalize(&base_dir.join(path.trim())))
}

/// The host a step runs on, from its `host` and `role` properties (`None`: this machine).
pub fn step_host(node: &RawNode, fleet: &Fleet, interp: &Interpolator<'_>, diags: &mut Diagnostics) -> Option<String> {
    let host = node.prop("host").map(|p| &p.value);
    let role = node.prop("role").map(|p| &p.value);
    if let (Some(_), Some(role)) = (host, role) {
        diags.push(
            Diagnostic::error(Code::HostAndRole, "a step takes `host` or `role`, not both")
                .at(role.span, "and `host` is given too")
                .help("`host=\"web1\"` names one host; `role=\"web\"` means the role's first host: keep one"),
        );
        return None;
    }
    if let Some(value) = host {
        let Scalar::Str(text) = &value.value else {
            diags.push(wrong_type(value, "an SSH destination", "write `host=\"web1\"`"));
            return None;
        };
        let name = render(interp, text, value.span, diags)?;
        let declared = fleet.destinations();
        if declared.contains(&name.as_str()) {
            return Some(name);
        }
        let d = Diagnostic::error(Code::UnknownHost, format!("`host` names `{name}`, which no `hosts` node declares"))
            .at(value.span, "not a declared host");
        diags.push(match did_you_mean(&name, declared.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None if declared.is_empty() => d.help(format!("declare it with its role: `hosts \"web\" \"{name}\"`")),
            None => d.help(format!("the declared hosts are: {}", declared.join(", "))),
        });
        return None;
    }
    let value = role?;
    let Scalar::Str(text) = &value.value else {
        diags.push(wrong_type(value, "a role name", "write `role=\"web\"`"));
        return None;
    };
    let name = render(interp, text, value.span, diags)?;
    if let Some(role) = fleet.role(&name) {
        return role.hosts.first().cloned();
    }
    let d = Diagnostic::error(Code::UnknownRole, format!("`role` names `{name}`, which no `hosts` node declares"))
        .at(value.span, "not a declared role");
    let roles = fleet.roles.iter().map(|r| r.name.as_str());
    diags.push(match did_you_mean(&name, roles.clone()) {
        Some(s) => d.help(format!("did you mean `{s}`?")),
        None if fleet.is_empty() => d.help(format!("declare the role's hosts: `hosts \"{name}\" \"web1\" \"web2\"`")),
        None => d.help(format!("the declared roles are: {}", roles.collect::<Vec<_>>().join(", "))),
    });
    None
}

fn render(interp: &Interpolator<'_>, text: &str, span: Span, diags: &mut Diagnostics) -> Option<String> {
    match interp.render(text, span) {
        Ok(s) if s.contains(crate::plan::fields::UNRESOLVED) => None,
        Ok(s) => Some(s),
        Err(d) => {
            diags.push(*d);
            None
        }
    }
}
