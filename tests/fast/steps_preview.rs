//! What `zdd plan` shows for each Django kind of the shipped production plan: commands, the full unit and site
//! files, links, checks and undo, as one snapshot per plan (paths point into a directory that does not exist, so
//! the previews read nothing from this machine).

use crate::driver;

use std::path::Path;
use std::sync::Arc;

use zdd_engine::host::LocalHost;
use zdd_engine::kind::PreviewCtx;

async fn previews(plan_name: &str, slots: (&str, &str), vars: &[&str]) -> String {
    let plan_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans").join(plan_name);
    let root = "/nonexistent/zdd-preview";
    let mut all: Vec<String> = [
        format!("root={root}/srv"),
        format!("site_conf={root}/nginx/shop.conf"),
        format!("unit_dir={root}/units"),
        format!("env_file={root}/shop.env"),
        format!("source={root}/src"),
    ]
    .into();
    all.extend(vars.iter().map(|v| (*v).to_owned()));
    let target = driver::target("20261126-180000", slots.1, Some((slots.0, "20261126-170000")));
    let plan = driver::read_plan(&plan_path, &all, &target, Path::new("/nonexistent/zdd-preview/state"));
    let ctx = PreviewCtx {
        plan: plan.clone(),
        target,
        host: Arc::new(LocalHost::new()),
        state_dir: "/nonexistent/zdd-preview/state".into(),
    };
    let kinds = zdd_steps::builtin();
    let mut out = String::new();
    for step in plan.steps.iter().filter(|s| s.kind != "packages") {
        let kind = kinds.get(&step.kind).unwrap();
        let preview = kind.preview(step, &ctx).await.unwrap_or_else(|e| panic!("{}: {e:?}", step.name));
        out.push_str(&format!("== {} [{}] effect {:?}\n", step.name, step.kind, kind.effect(step)));
        out.push_str(&serde_json::to_string_pretty(&preview).unwrap());
        out.push('\n');
    }
    out
}

#[tokio::test]
async fn prod_plan_previews() {
    insta::assert_snapshot!(previews("prod.kdl", ("a", "b"), &[]).await);
}

/// With `canary_weight`: the link to the new slot's socket, the split by files (no reload), the verdict.
#[tokio::test]
async fn a_canary_previews_its_split_window_and_verdict() {
    let text = previews("prod.kdl", ("a", "b"), &["canary_weight=10%", "canary_sticky=true"]).await;
    let canary = &text[text.find("== canary").unwrap()..text.find("== switch").unwrap()];
    assert!(canary.contains(r#""link": "/nonexistent/zdd-preview/srv/run/canary.sock""#), "{canary}");
    assert!(canary.contains(r#""target": "/nonexistent/zdd-preview/srv/run/b.sock""#), "{canary}");
    assert!(
        canary.contains("10% of requests, by client (address and user agent), go to the new instance for 1m"),
        "{canary}"
    );
    assert!(canary.contains("no reload"), "{canary}");
    assert!(canary.contains("its p95 latency at most 1.5 times, with at least 50 requests on each side"), "{canary}");
}

#[tokio::test]
async fn port_switch_plan_previews() {
    let text = previews("port-switch.kdl", ("8001", "8002"), &[]).await;
    assert!(text.contains("server 127.0.0.1:8002;"), "{text}");
    assert!(text.contains("http://127.0.0.1:8002/health/"), "{text}");
    // Nginx workers from before the reload may still answer from 8001: the checks say whose answers count.
    assert!(text.contains("add_header X-Zdd-Upstream $zdd_probe_upstream always;"), "{text}");
    assert!(
        text.contains("GET http://127.0.0.1:80/health/ answers 200 through the proxy from 127.0.0.1:8002"),
        "{text}"
    );
    assert!(text.contains("GET http://127.0.0.1:80/ expect 200 from 127.0.0.1:8002"), "{text}");
}

#[tokio::test]
async fn the_socket_site_names_no_upstream() {
    let text = previews("prod.kdl", ("a", "b"), &[]).await;
    assert!(!text.contains("X-Zdd-Upstream"), "{text}");
    assert!(!text.contains(" from unix:"), "{text}");
}

/// plans/web-worker.kdl: the worker's unit (its `%h` escaped for systemd), the task comparison with the live
/// worker and the `cancel_consumer` before the switch; the retire's warm stop, and both undos.
#[tokio::test]
async fn web_worker_plan_previews_the_workers() {
    let text = previews("web-worker.kdl", ("a", "b"), &[]).await;
    let worker = text.split("== worker [worker]").nth(1).unwrap().split("\n== ").next().unwrap();
    insta::assert_snapshot!(worker);
    let retire = text.split("== worker-retire [worker-retire]").nth(1).unwrap();
    assert!(retire.contains("systemctl stop proj-worker-a.service"), "{retire}");
    assert!(retire.contains("systemctl start proj-worker-a.service"), "{retire}");
}

/// plans/web-worker.kdl with `beat=true`: the live beat's stop comes before the new beat's unit and start; the
/// undo stops the new one before it starts the old one. With the default `beat=false` no beat starts, and the live
/// one is still stopped (and restarted by the undo).
#[tokio::test]
async fn web_worker_plan_previews_beat() {
    let text = previews("web-worker.kdl", ("a", "b"), &["beat=true"]).await;
    let beat = text.split("== beat [beat]").nth(1).unwrap().split("\n== ").next().unwrap();
    insta::assert_snapshot!(beat);
    let text = previews("web-worker.kdl", ("a", "b"), &[]).await;
    let beat = text.split("== beat [beat]").nth(1).unwrap().split("\n== ").next().unwrap();
    assert!(beat.contains("systemctl stop proj-beat-a.service"), "{beat}");
    assert!(!beat.contains("proj-beat-b.service"), "{beat}");
    assert!(beat.contains("none starts"), "{beat}");
    let text = previews("web-worker.kdl", ("a", "b"), &["beat=true", "service_manager=process"]).await;
    let beat = text.split("== beat [beat]").nth(1).unwrap().split("\n== ").next().unwrap();
    assert!(beat.contains("TERM the live release's beat beat-a and wait until it has exited"), "{beat}");
    assert!(
        beat.contains(
            "releases/20261126-180000/venv/bin/celery -A proj beat --schedule /nonexistent/zdd-preview/srv/shared/\
             beat-schedule --loglevel INFO >> /nonexistent/zdd-preview/srv/log/proj-beat-b.log 2>&1 &"
        ),
        "{beat}"
    );
}

#[tokio::test]
async fn the_plan_says_what_may_skip_by_the_live_releases_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("srv/releases/20261126-170000");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(
        live.join(".zdd-migrate-default.json"),
        r#"{"fingerprint": "0123456789abcdef", "applied": [["catalog", "0001_initial"], ["catalog", "0002_x"]]}"#,
    )
    .unwrap();
    std::fs::write(
        live.join(".zdd-static.json"),
        r#"{"static_url": "/static/", "static_root": null, "in_release": false, "storage": "",
            "collected_into": "/x", "fingerprint": "fedcba9876543210"}"#,
    )
    .unwrap();
    let root = format!("root={}", dir.path().join("srv").display());
    let text = previews("prod.kdl", ("a", "b"), &[&root]).await;
    assert!(
        text.contains(
            "skip if the migration files, INSTALLED_APPS, MIGRATION_MODULES and database `default` hash to \
                       the live release 20261126-170000's fingerprint 0123456789ab and django_migrations still has \
                       its 2 migrations"
        ),
        "{text}"
    );
    assert!(text.contains("fingerprint fedcba987654 (read with the settings, no Django start): hard-link"), "{text}");
}
