//! Validation of whole plans (read from memory, checked against the test kinds): the values of a valid plan,
//! defaults and overrides, includes, variables, and that every mistake is collected.

#![allow(dead_code)]

use crate::fake_kinds;

use std::path::Path;
use std::time::Duration;

use zdd_engine::diag::Code;
use zdd_engine::kind::DeployTarget;
use zdd_engine::plan::load::MemoryReader;
use zdd_engine::plan::{self, PlanRead, Runtime, TargetSource, Value, VarInputs, VarOrigin};

fn read(reader: &MemoryReader, vars: &[&str]) -> PlanRead {
    plan::from_sources(
        Path::new("deploy/prod.kdl"),
        Path::new("/srv/deploy"),
        reader,
        &VarInputs::cli(vars.iter().copied()),
        &Runtime::sample(),
        &fake_kinds::kinds(),
    )
}

fn one(text: &str) -> PlanRead {
    read(&MemoryReader::new().with("deploy/prod.kdl", text), &[])
}

fn codes(read: &PlanRead) -> Vec<Code> {
    match &read.result {
        Ok(_) => Vec::new(),
        Err(d) => d.iter().map(|d| d.code).collect(),
    }
}

const VALID: &str = r#"
plan "shop"
slots "8001" "8002"
var "app" "shop"
var "root" "/srv/{{app}}"
defaults {
    timeout "2m"
    retry attempts=2 backoff="1s" jitter="250ms"
}
step "write" kind="fake" {
    path "{{root}}/releases/{{release}}/x"
    port "{{slot}}"
    url "http+unix://{{root}}/run/{{slot}}.sock:/health/"
    cmd "make" "assets"
    get "/" status=301
    get "/health/"
    timeout "30s"
    retry attempts=3
}
step "check" kind="probe" {
    needs "write"
    url "http://127.0.0.1:{{live_slot}}/"
}
"#;

#[test]
fn a_valid_plan_has_typed_interpolated_values() {
    let read = one(VALID);
    let plan = read.result.as_ref().unwrap_or_else(|d| panic!("{}", d.render(&read.sources, false)));
    assert_eq!(plan.name, "shop");
    assert_eq!(plan.slots, ["8001", "8002"]);
    let write = &plan.steps[0];
    assert_eq!(write.fields.path("path").unwrap(), Path::new("/srv/shop/releases/20260101-000000/x"));
    assert_eq!(write.fields.port("port"), Some(8001));
    assert_eq!(write.fields.str("url"), Some("http+unix:///srv/shop/run/8001.sock:/health/"));
    assert_eq!(write.fields.strings("cmd"), ["make", "assets"]);
    // Defaults of the kind are applied (and interpolated).
    assert_eq!(write.fields.duration("wait"), Some(Duration::from_secs(5)));
    assert_eq!(write.fields.str("mode"), Some("fast"));
    assert_eq!(write.fields.str("content"), Some("hello 20260101-000000\n"));
    // Repeated fields keep every occurrence, property defaults applied.
    let gets = write.fields.all("get");
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[0].prop("status"), Some(&Value::Int(301)));
    assert_eq!(gets[1].prop("status"), Some(&Value::Int(200)));
    // Step policy: the step's timeout and attempts, the plan's backoff and jitter.
    assert_eq!(write.policy.timeout, Duration::from_secs(30));
    assert_eq!(write.policy.retry.attempts, 3);
    assert_eq!(write.policy.retry.backoff, Duration::from_secs(1));
    assert_eq!(write.policy.retry.jitter, Duration::from_millis(250));
    let check = &plan.steps[1];
    assert_eq!(check.policy.timeout, Duration::from_mins(2));
    assert_eq!(check.needs, [write.id]);
    assert_eq!(check.fields.str("url"), Some("http://127.0.0.1:8002/"));
    // Runtime variables are listed with their origin.
    let release = plan.vars.iter().find(|v| v.name == "release").unwrap();
    assert_eq!(release.origin, VarOrigin::Runtime);
    let plan_dir = plan.vars.iter().find(|v| v.name == "plan_dir").unwrap();
    assert_eq!(plan_dir.value, "/srv/deploy");
}

#[test]
fn a_fixed_target_and_state_dir_are_used() {
    let target = DeployTarget {
        release: "r2".into(),
        slot: "8002".into(),
        live_slot: None,
        live_release: None,
        rollback: false,
    };
    let runtime = Runtime { state_dir: Some(Path::new("/tmp/state")), target: TargetSource::Fixed(&target) };
    let reader = MemoryReader::new().with("deploy/prod.kdl", VALID);
    let read = plan::from_sources(
        Path::new("deploy/prod.kdl"),
        Path::new("/srv/deploy"),
        &reader,
        &VarInputs::default(),
        &runtime,
        &fake_kinds::kinds(),
    );
    assert_eq!(codes(&read), [Code::BadUrl], "live_slot is empty on a first deploy");
    assert_eq!(read.state_dir.as_deref(), Some(Path::new("/tmp/state")));
}

#[test]
fn a_plan_is_read_once_then_bound_to_the_target_its_header_decides() {
    let reader = MemoryReader::new().with("deploy/prod.kdl", VALID);
    let opened = plan::open_sources(
        Path::new("deploy/prod.kdl"),
        Path::new("/srv/deploy"),
        &reader,
        &VarInputs::default(),
        None,
        &fake_kinds::kinds(),
    );
    let unbound = opened.result.unwrap();
    let header = unbound.header();
    assert_eq!(header.name, "shop");
    assert_eq!(header.state_dir, Path::new("/var/lib/zdd/shop"));
    // The sample binding is what `zdd check` validated.
    assert_eq!(unbound.sample().steps[0].fields.port("port"), Some(8001));
    let target = DeployTarget {
        release: "r9".into(),
        slot: header.slots[1].clone(),
        live_slot: Some(header.slots[0].clone()),
        live_release: Some("r8".into()),
        rollback: false,
    };
    let plan = unbound.bind(&target, &fake_kinds::kinds()).unwrap();
    assert_eq!(plan.steps[0].fields.port("port"), Some(8002));
}

#[test]
fn binding_reports_what_only_the_real_values_break() {
    let reader = MemoryReader::new().with("deploy/prod.kdl", VALID);
    let kinds = fake_kinds::kinds();
    let opened = plan::open_sources(
        Path::new("deploy/prod.kdl"),
        Path::new("/srv/deploy"),
        &reader,
        &VarInputs::default(),
        None,
        &kinds,
    );
    let unbound = opened.result.unwrap();
    // A first deploy has no live slot: the plan's `http://x:{{live_slot}}/` stops being a URL.
    let first = DeployTarget {
        release: "r1".into(),
        slot: "8001".into(),
        live_slot: None,
        live_release: None,
        rollback: false,
    };
    let diags = unbound.bind(&first, &kinds).unwrap_err();
    let codes: Vec<Code> = diags.iter().map(|d| d.code).collect();
    assert_eq!(codes, [Code::BadUrl]);
}

#[test]
fn the_header_reads_even_when_a_step_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.kdl");
    std::fs::write(&path, "plan \"shop\"\nstate-dir \"st\"\nstep \"x\" kind=\"nope\"\n").unwrap();
    let (_, header) = plan::read_header(&path, &VarInputs::default(), None);
    assert_eq!(header.unwrap().state_dir, dir.path().join("st"));
}

#[test]
fn includes_expand_in_place_and_the_includer_wins() {
    let reader = MemoryReader::new()
        .with(
            "deploy/prod.kdl",
            "plan \"shop\"\nvar \"app\" \"main\"\nstep \"first\" kind=\"probe\" { url \"http://x/\"; }\ninclude \"frag/steps.kdl\"\nstep \"last\" kind=\"probe\" { url \"http://x/\"; needs \"middle\"; }\n",
        )
        .with(
            "deploy/frag/steps.kdl",
            "var \"app\" \"fragment\"\nvar \"extra\" \"{{app}}-x\"\nstep \"middle\" kind=\"fake\" { path \"/{{extra}}\"; }\n",
        );
    let read = read(&reader, &[]);
    let plan = read.result.unwrap();
    let names: Vec<_> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["first", "middle", "last"]);
    assert_eq!(plan.steps[1].fields.path("path").unwrap(), Path::new("/main-x"));
}

#[test]
fn cli_vars_win_and_secrets_are_marked() {
    let text = "plan \"p\"\nvar \"key\" secret=#true\nvar \"app\" \"a\"\nstep \"s\" kind=\"fake\" { path \"/{{app}}\"; content \"{{key}}\"; }\n";
    let read = read(&MemoryReader::new().with("deploy/prod.kdl", text), &["key=hunter22", "app=b"]);
    let plan = read.result.unwrap();
    assert_eq!(plan.secrets().collect::<Vec<_>>(), ["hunter22"]);
    let app = plan.vars.iter().find(|v| v.name == "app").unwrap();
    assert_eq!((app.value.as_str(), &app.origin), ("b", &VarOrigin::Cli));
}

#[test]
fn every_mistake_is_collected_in_source_order() {
    let text = r#"plan "p"
step "a" kind="fake" {
    path "/x"
    port 70000
    wait "5 seconds"
    mode "sloww"
}
step "b" kind="fake" {
    needs "c"
}
step "c" kind="fake" {
    needs "b"
    path "/y"
    server-name "a;b"
    url "ftp://x"
}
step "a" kind="probe" { url "http://x/"; }
"#;
    assert_eq!(
        codes(&one(text)),
        [
            Code::BadPort,
            Code::BadDuration,
            Code::BadEnum,
            Code::MissingField,
            Code::DependencyCycle,
            Code::BadConfigWord,
            Code::BadUrl,
            Code::DuplicateStep,
        ]
    );
}

#[test]
fn unresolved_variables_are_reported_once() {
    // `key` has no value: the string that uses it is not reported again.
    let text = "plan \"p\"\nvar \"key\"\nstep \"s\" kind=\"fake\" { path \"/{{key}}\"; }\n";
    assert_eq!(codes(&one(text)), [Code::VarNoValue]);
}

#[test]
fn kind_checks_run_on_complete_steps() {
    let text = "plan \"p\"\nstep \"s\" kind=\"fake\" { path \"/x\"; content \"forbidden\"; }\n";
    assert_eq!(codes(&one(text)), [Code::BadEnum]);
}

#[test]
fn misplaced_header_and_common_field_errors() {
    let reader = MemoryReader::new()
        .with("deploy/prod.kdl", "plan \"p\"\ninclude \"f.kdl\"\nstep \"s\" kind=\"fake\" { path \"/x\"; timeout \"0s\"; retry attempts=0 backof=\"1s\"; description; }\n")
        .with("deploy/f.kdl", "plan \"other\"\n");
    let read = read(&reader, &[]);
    let mut c = codes(&read);
    c.sort_unstable();
    assert_eq!(c, [Code::BadDuration, Code::BadInt, Code::MisplacedNode, Code::MissingArgument, Code::UnknownProperty]);
}

#[test]
fn a_plan_without_name_or_with_bad_slots_is_invalid() {
    assert_eq!(codes(&one("slots \"a\" \"a\"\n")), [Code::MissingPlan, Code::BadSlot]);
}

#[test]
fn kind_checks_skip_steps_whose_fields_are_wrong() {
    // `path` is missing: the kind's own check (which may rely on it) is not run on this step.
    let text = "plan \"p\"\nstep \"s\" kind=\"fake\" { content \"forbidden\"; }\n";
    assert_eq!(codes(&one(text)), [Code::MissingField]);
}
