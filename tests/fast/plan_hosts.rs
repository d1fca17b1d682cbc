//! The plan's hosts: `hosts` roles (from variables), `ssh-config`, and each step's `host`/`role`, with every
//! mistake (a bad destination, a host listed twice, an unknown host or role) reported with its span and code.

use std::path::{Path, PathBuf};

use crate::fake_kinds;

use zdd_engine::diag::Code;
use zdd_engine::plan::load::MemoryReader;
use zdd_engine::plan::{self, PlanRead, Runtime, VarInputs};

fn read_with(text: &str, vars: &[&str]) -> PlanRead {
    plan::from_sources(
        Path::new("deploy/fleet.kdl"),
        Path::new("/srv/deploy"),
        &MemoryReader::new().with("deploy/fleet.kdl", text),
        &VarInputs::cli(vars.iter().copied()),
        &Runtime::sample(),
        &fake_kinds::kinds(),
    )
}

fn codes(read: &PlanRead) -> Vec<Code> {
    match &read.result {
        Ok(_) => Vec::new(),
        Err(d) => d.iter().map(|d| d.code).collect(),
    }
}

fn rendered(read: &PlanRead) -> String {
    match &read.result {
        Ok(_) => String::new(),
        Err(d) => d.render(&read.sources, false),
    }
}

const FLEET: &str = r#"
plan "fleet"
var "hosts" "web1 deploy@10.0.0.5:2222"
var "lb_host" "lb1"
var "ssh_config" "ssh_config"
hosts "web" "{{hosts}}"
hosts "lb" "{{lb_host}}"
ssh-config "{{ssh_config}}"
repeat "h" in="{{hosts}}" serial=1 {
    step "build" kind="probe" host="{{h}}" { url "http://127.0.0.1/" }
}
step "migrate" kind="probe" role="web" { needs "build"; url "http://127.0.0.1/" }
step "lb" kind="probe" host="{{lb_host}}" { needs "migrate"; url "http://127.0.0.1/" }
step "local" kind="probe" { needs "lb"; url "http://127.0.0.1/" }
"#;

#[test]
fn roles_come_from_variables_and_each_step_gets_its_host() {
    let read = read_with(FLEET, &[]);
    let plan = read.result.as_ref().unwrap_or_else(|d| panic!("{}", d.render(&read.sources, false)));
    let web = plan.fleet.role("web").map(|r| r.hosts.clone());
    assert_eq!(web, Some(vec!["web1".to_owned(), "deploy@10.0.0.5:2222".to_owned()]));
    assert_eq!(plan.fleet.destinations(), ["web1", "deploy@10.0.0.5:2222", "lb1"]);
    assert_eq!(plan.fleet.ssh_config, Some(PathBuf::from("/srv/deploy/ssh_config")));
    let hosts: Vec<(&str, Option<&str>)> = plan.steps.iter().map(|s| (s.name.as_str(), s.host.as_deref())).collect();
    assert_eq!(
        hosts,
        [
            ("build.web1", Some("web1")),
            ("build.deploy-10.0.0.5-2222", Some("deploy@10.0.0.5:2222")),
            // `role=` is the role's first host: work done once.
            ("migrate", Some("web1")),
            ("lb", Some("lb1")),
            ("local", None),
        ]
    );
}

#[test]
fn a_variable_changes_the_fleet_and_an_empty_ssh_config_means_the_users_own() {
    let read = read_with(FLEET, &["hosts=a b c", "ssh_config="]);
    let plan = read.result.as_ref().unwrap_or_else(|d| panic!("{}", d.render(&read.sources, false)));
    assert_eq!(plan.fleet.role("web").map(|r| r.hosts.len()), Some(3));
    assert_eq!(plan.fleet.ssh_config, None);
    assert_eq!(plan.steps.iter().filter(|s| s.name.starts_with("build.")).count(), 3);
}

#[test]
fn a_plan_without_hosts_runs_every_step_here() {
    let read = read_with("plan \"p\"\nstep \"a\" kind=\"probe\" { url \"http://127.0.0.1/\" }\n", &[]);
    let plan = read.result.as_ref().unwrap_or_else(|d| panic!("{}", d.render(&read.sources, false)));
    assert!(plan.fleet.is_empty());
    assert_eq!(plan.steps[0].host, None);
}

#[test]
fn a_host_listed_twice_in_a_role_is_refused_even_through_a_variable() {
    let read = read_with(FLEET, &["hosts=web1 web2 web1"]);
    assert!(codes(&read).contains(&Code::DuplicateHost), "{:?}", codes(&read));
    insta::assert_snapshot!(rendered(&read).lines().take(4).collect::<Vec<_>>().join("\n"), @r"
    zdd::duplicate-host

      × host `web1` is listed twice in role `web`
       ╭─[deploy/fleet.kdl:6:13]
    ");
}

#[test]
fn a_host_in_two_roles_is_fine_but_a_role_declared_twice_is_not() {
    let two_roles = "plan \"p\"\nhosts \"web\" \"a\"\nhosts \"lb\" \"a\"\n";
    assert_eq!(codes(&read_with(two_roles, &[])), []);
    let twice = "plan \"p\"\nhosts \"web\" \"a\"\nhosts \"web\" \"b\"\n";
    assert_eq!(codes(&read_with(twice, &[])), [Code::DuplicateNode]);
}

#[test]
fn an_unknown_host_or_role_says_what_was_meant() {
    let text = r#"
plan "p"
hosts "web" "web1" "web2"
step "a" kind="probe" host="wbe1" { url "http://127.0.0.1/" }
step "b" kind="probe" role="wbe" { url "http://127.0.0.1/" }
step "c" kind="probe" host="web1" role="web" { url "http://127.0.0.1/" }
"#;
    let read = read_with(text, &[]);
    assert_eq!(codes(&read), [Code::UnknownHost, Code::UnknownRole, Code::HostAndRole]);
    let text = rendered(&read);
    assert!(text.contains("did you mean `web1`?"), "{text}");
    assert!(text.contains("did you mean `web`?"), "{text}");
}

#[test]
fn a_host_of_a_plan_without_hosts_says_how_to_declare_it() {
    let read = read_with("plan \"p\"\nstep \"a\" kind=\"probe\" host=\"web1\" { url \"http://127.0.0.1/\" }\n", &[]);
    assert_eq!(codes(&read), [Code::UnknownHost]);
    assert!(rendered(&read).contains("hosts \"web\" \"web1\""), "{}", rendered(&read));
}

#[test]
fn a_destination_ssh_would_read_as_an_option_is_refused() {
    let read = read_with(FLEET, &["hosts=web1 -oProxyCommand=x"]);
    assert!(codes(&read).contains(&Code::BadHost), "{:?}", codes(&read));
    let read = read_with(FLEET, &["hosts=web1:99999"]);
    assert!(codes(&read).contains(&Code::BadHost), "{:?}", codes(&read));
}

#[test]
fn hosts_and_ssh_config_shape_mistakes() {
    let text = "plan \"p\"\nhosts\nhosts \"web\"\nhosts \"a b\" \"x\"\nssh-config \"a\" \"b\"\nssh-config \"c\"\n";
    let got = codes(&read_with(text, &[]));
    for code in [Code::MissingArgument, Code::BadName, Code::ExtraArgument, Code::DuplicateNode] {
        assert!(got.contains(&code), "{code:?} missing from {got:?}");
    }
}

#[test]
fn a_batch_size_comes_from_a_variable_or_a_share_of_the_hosts() {
    let plan = |serial: &str| {
        format!(
            "plan \"p\"\nvar \"hosts\" \"a b c d e\"\nvar \"batch\" \"2\"\nhosts \"web\" \"{{{{hosts}}}}\"\n\
             repeat \"h\" in=\"{{{{hosts}}}}\" serial={serial} {{\n\
             step \"s\" kind=\"probe\" host=\"{{{{h}}}}\" {{ url \"http://127.0.0.1/\" }}\n}}\n"
        )
    };
    let needs = |serial: &str| -> Vec<Vec<String>> {
        let read = read_with(&plan(serial), &[]);
        let plan = read.result.as_ref().unwrap_or_else(|d| panic!("{}", d.render(&read.sources, false)));
        plan.steps.iter().map(|s| s.needs.iter().map(|n| plan.step(*n).name.clone()).collect()).collect()
    };
    let two: Vec<Vec<String>> = [vec![], vec![], vec!["s.a", "s.b"], vec!["s.a", "s.b"], vec!["s.c", "s.d"]]
        .iter()
        .map(|v| v.iter().map(|s| (*s).to_owned()).collect())
        .collect();
    assert_eq!(needs("\"{{batch}}\""), two);
    // 40% of five hosts is two; a share rounds up, so 30% is two as well.
    assert_eq!(needs("\"40%\""), two);
    assert_eq!(needs("\"30%\""), two);
    for bad in ["\"0\"", "\"0%\"", "\"150%\"", "\"many\""] {
        assert_eq!(codes(&read_with(&plan(bad), &[])), [Code::BadInt], "{bad}");
    }
}
