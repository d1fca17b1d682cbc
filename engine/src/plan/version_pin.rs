//! `zdd-version ">=0.2"`: the zdd versions a plan file is written for. A team shares plans and fragments, and a
//! plan that uses something only a newer zdd knows would otherwise be misread by an older one (an unknown field
//! reported as a typo, or a default that changed). Every requirement, in the main file and in each include, must
//! hold for the running zdd, else the plan is refused before anything else of it is judged. Pure: the running
//! version is given.

use semver::{Version, VersionReq};

use crate::ZDD_VERSION;
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::plan::raw::{RawNode, Scalar};
use crate::plan::validate::{missing_argument, wrong_type};

/// Reports each `zdd-version` node whose requirement is not valid or excludes `running`. True when every
/// requirement holds.
pub fn check(nodes: &[&RawNode], running: &Version, diags: &mut Diagnostics) -> bool {
    let mut holds = true;
    for node in nodes {
        let Some(arg) = node.args.first() else {
            diags.push(missing_argument(
                node,
                "`zdd-version` needs a requirement",
                "write the zdd versions the plan is written for as Cargo does: `zdd-version \">=0.2\"`",
            ));
            holds = false;
            continue;
        };
        if let Some(extra) = node.args.get(1) {
            diags.push(
                Diagnostic::error(Code::ExtraArgument, "`zdd-version` takes one requirement")
                    .at(extra.span, "extra argument")
                    .help("join the bounds in one string, separated by a comma: `zdd-version \">=0.2, <0.4\"`"),
            );
        }
        let Scalar::Str(text) = &arg.value else {
            diags.push(wrong_type(arg, "a string", "write the requirement in double quotes: `zdd-version \">=0.2\"`"));
            holds = false;
            continue;
        };
        match VersionReq::parse(text) {
            Ok(req) if req.matches(running) => {}
            Ok(_) => {
                diags.push(
                    Diagnostic::error(
                        Code::ZddVersion,
                        format!("this plan is written for zdd {text}, and this is zdd {running}"),
                    )
                    .at(arg.span, format!("excludes zdd {running}"))
                    .help(
                        "run it with a zdd that matches (`zdd --version` says which this is), or, if the plan \
                         reads the same with this one, widen the requirement",
                    ),
                );
                holds = false;
            }
            Err(error) => {
                diags.push(
                    Diagnostic::error(Code::BadVersionRequirement, format!("`{text}` is not a version requirement"))
                        .at(arg.span, error.to_string())
                        .help("write it as Cargo does: `>=0.2`, `^0.3`, `>=0.2, <0.4` or `0.2.*`"),
                );
                holds = false;
            }
        }
    }
    holds
}

/// The running zdd's version.
pub fn running() -> Version {
    // The crate's own version always parses; the fallback only keeps this total.
    Version::parse(ZDD_VERSION).unwrap_or_else(|_| Version::new(0, 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::raw;
    use crate::source::FileId;

    fn codes(text: &str, running: &str) -> Vec<&'static str> {
        let (doc, mut diags) = raw::parse(FileId(0), text);
        let nodes: Vec<&RawNode> = doc
            .items
            .iter()
            .filter_map(|item| match item {
                raw::RawItem::ZddVersion(n) => Some(n),
                _ => None,
            })
            .collect();
        let running = Version::parse(running).expect("a version");
        check(&nodes, &running, &mut diags);
        diags.iter().map(|d| d.code.as_str()).collect()
    }

    #[test]
    fn a_requirement_holds_or_names_the_version_it_excludes() {
        assert!(codes("zdd-version \">=0.1\"", "0.1.0").is_empty());
        assert!(codes("zdd-version \">=0.1, <0.3\"", "0.2.5").is_empty());
        assert_eq!(codes("zdd-version \">=0.2\"", "0.1.0"), ["zdd::zdd-version"]);
        assert_eq!(codes("zdd-version \"^0.3\"", "0.4.0"), ["zdd::zdd-version"]);
        assert_eq!(codes("zdd-version \"at least 0.2\"", "0.1.0"), ["zdd::bad-version-requirement"]);
        assert_eq!(codes("zdd-version 2", "0.1.0"), ["zdd::wrong-type"]);
        assert_eq!(codes("zdd-version", "0.1.0"), ["zdd::missing-argument"]);
        assert_eq!(codes("zdd-version \">=0.1\" \"<0.3\"", "0.1.0"), ["zdd::extra-argument"]);
    }

    #[test]
    fn this_zdd_has_a_version() {
        assert_eq!(running().to_string(), ZDD_VERSION);
    }
}
