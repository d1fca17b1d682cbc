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

/// Only an optional path may be left empty by its variables (the field is then not given): a required one is
/// still a bad path.
#[test]
fn a_required_path_left_empty_by_a_variable_is_still_refused() {
    let text = "plan \"p\"\nvar \"p\" \"\"\nstep \"s\" kind=\"fake\" { path \"{{p}}\"; }\n";
    assert_eq!(codes(&one(text)), [Code::BadPath]);
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

/// A `repeat` over two lanes: a step writing each lane's file and a check of it, then a written step after both.
const REPEATED: &str = r#"plan "lanes"
var "lanes" "1 2"
step "build" kind="fake" {
    path "/srv/build"
}
repeat "lane" in="{{lanes}}" {
    step "start" kind="fake" {
        description "Start lane {{lane}}"
        needs "build"
        path "/srv/{{lane}}.conf"
    }
    step "check" kind="probe" {
        needs "start"
        url "http://127.0.0.1:8000/{{lane}}"
    }
}
step "done" kind="probe" {
    needs "check"
    url "http://127.0.0.1/"
}
"#;

fn names(plan: &plan::Plan) -> Vec<&str> {
    plan.steps.iter().map(|s| s.name.as_str()).collect()
}

fn needs_of<'p>(plan: &'p plan::Plan, name: &str) -> Vec<&'p str> {
    let step = plan.step_by_name(name).unwrap_or_else(|| panic!("no step {name}: {:?}", names(plan)));
    plan.graph.needs(step.id).iter().map(|&id| plan.steps[id.0].name.as_str()).collect()
}

fn valid(read: &PlanRead) -> &plan::Plan {
    read.result.as_ref().unwrap_or_else(|d| panic!("{}", d.render(&read.sources, false)))
}

#[test]
fn a_repeat_makes_one_copy_of_its_steps_per_item() {
    let read = one(REPEATED);
    let plan = valid(&read);
    assert_eq!(names(plan), ["build", "start.1", "check.1", "start.2", "check.2", "done"]);
    // The item is a variable inside the group; a name of the group's own steps means the same iteration's copy.
    assert_eq!(plan.step_by_name("start.2").unwrap().fields.str("path"), Some("/srv/2.conf"));
    assert_eq!(plan.step_by_name("start.2").unwrap().description.as_deref(), Some("Start lane 2"));
    assert_eq!(needs_of(plan, "check.2"), ["start.2"]);
    assert_eq!(needs_of(plan, "start.1"), ["build"]);
    // Outside the group, the repeated step's name means every copy; without `serial` the lanes are parallel.
    assert_eq!(needs_of(plan, "done"), ["check.1", "check.2"]);
    assert_eq!(plan.graph.waves.len(), 4);
    // The list comes from a variable, so `--var` changes it.
    let read = read_with_vars(REPEATED, &["lanes=a b c"]);
    assert_eq!(needs_of(valid(&read), "done"), ["check.a", "check.b", "check.c"]);
}

fn read_with_vars(text: &str, vars: &[&str]) -> PlanRead {
    read(&MemoryReader::new().with("deploy/prod.kdl", text), vars)
}

#[test]
fn serial_runs_the_iterations_in_batches() {
    let text = REPEATED.replace("in=\"{{lanes}}\"", "in=\"{{lanes}}\" serial=1");
    let read = read_with_vars(&text, &["lanes=1 2 3"]);
    let plan = valid(&read);
    // Each iteration's first step needs the previous iteration's last step.
    assert_eq!(needs_of(plan, "start.1"), ["build"]);
    assert_eq!(needs_of(plan, "start.2"), ["build", "check.1"]);
    assert_eq!(needs_of(plan, "start.3"), ["build", "check.2"]);
    let text = REPEATED.replace("in=\"{{lanes}}\"", "in=\"{{lanes}}\" serial=2");
    let read = read_with_vars(&text, &["lanes=1 2 3 4 5"]);
    let plan = valid(&read);
    assert_eq!(needs_of(plan, "start.2"), ["build"]);
    assert_eq!(needs_of(plan, "start.3"), ["build", "check.1", "check.2"]);
    assert_eq!(needs_of(plan, "start.4"), ["build", "check.1", "check.2"]);
    assert_eq!(needs_of(plan, "start.5"), ["build", "check.3", "check.4"]);
}

#[test]
fn an_item_that_cannot_be_in_a_step_name_is_made_plain_there_only() {
    // A later `hosts` list holds SSH destinations: the step names get a plain suffix, the variable the host.
    let text = REPEATED.replace("/srv/{{lane}}.conf", "/srv/{{lane}}");
    let read = read_with_vars(&text, &["lanes=deploy@10.0.0.5:22 web2"]);
    let plan = valid(&read);
    assert_eq!(names(plan)[1..5], ["start.deploy-10.0.0.5-22", "check.deploy-10.0.0.5-22", "start.web2", "check.web2"]);
    assert_eq!(
        plan.step_by_name("start.deploy-10.0.0.5-22").unwrap().fields.str("path"),
        Some("/srv/deploy@10.0.0.5:22")
    );
    // Two items that give the same names are one too many.
    let read = read_with_vars(&text, &["lanes=a:1 a@1"]);
    assert_eq!(codes(&read), [Code::RepeatDuplicateItem]);
}

#[test]
fn repeat_mistakes_are_each_reported() {
    let cases: &[(&str, &str, &[Code])] = &[
        ("lanes= ", "", &[Code::RepeatEmpty]),
        ("lanes=1 2 1", "", &[Code::RepeatDuplicateItem]),
        // `done` is also the name of a written step: `needs "done"` would not say which.
        ("lanes=1", "step \"done\" kind=\"probe\"", &[Code::RepeatNameCollision]),
    ];
    for (var, replace_check, expected) in cases {
        let text = if replace_check.is_empty() {
            REPEATED.to_owned()
        } else {
            REPEATED
                .replace("step \"check\" kind=\"probe\"", replace_check)
                .replace("needs \"check\"", "needs \"start\"")
        };
        let read = read_with_vars(&text, &[var]);
        assert_eq!(codes(&read), *expected, "{var} {replace_check}");
    }
    let bad = |from: &str, to: &str| codes(&one(&REPEATED.replace(from, to)));
    assert_eq!(bad("repeat \"lane\"", "repeat \"lanes\""), [Code::RepeatVar]);
    assert_eq!(bad("repeat \"lane\"", "repeat \"slot\""), [Code::RepeatVar]);
    assert_eq!(bad(" in=\"{{lanes}}\"", ""), [Code::MissingProperty]);
    assert_eq!(bad("in=\"{{lanes}}\"", "in=\"{{lanes}}\" serial=0"), [Code::BadInt]);
    assert_eq!(bad("in=\"{{lanes}}\"", "in=\"{{lanes}}\" srial=1"), [Code::UnknownProperty]);
    assert_eq!(bad("    step \"check\"", "    var \"x\" \"y\"\n    step \"check\""), [Code::RepeatBody]);
    assert_eq!(bad("in=\"{{lanes}}\"", "in=\"{{lnaes}}\""), [Code::UndefinedVar]);
    // A mistake in a repeated step is reported once, not once per copy.
    assert_eq!(
        bad("path \"/srv/{{lane}}.conf\"", "path \"/srv/{{lane}}.conf\"\n        wait \"1 minute\""),
        [Code::BadDuration]
    );
    // A list times a group is capped, so reading a plan stays linear in its size.
    let many: Vec<String> = (0..600).map(|i| i.to_string()).collect();
    let read = read_with_vars(REPEATED, &[&format!("lanes={}", many.join(" "))]);
    assert_eq!(codes(&read), [Code::RepeatTooLarge]);
    // Outside its group, `{{lane}}` is not a variable.
    assert_eq!(bad("url \"http://127.0.0.1/\"", "url \"http://127.0.0.1/{{lane}}\""), [Code::UndefinedVar]);
}
