//! Skip by content on real components (the shop, a venv made by uv when the wheel cache has it, gunicorn as
//! detached processes, a private Nginx, the plan fragment): a release whose migrations changed runs `migrate`;
//! a release whose inputs are the live release's skips `migrate` (after its one query) and reuses the collected
//! static files by hard links, and still serves, under traffic with zero failed requests; a changed stylesheet
//! is collected again.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::shop_deploy::{Instances, Setup, Traffic, deploy, get};
use crate::support::env::{Requirement, require};

/// The hashed stylesheet collected into a release (`catalog/shop.<hash>.css`).
fn hashed_css(release: &Path) -> std::path::PathBuf {
    let dir = release.join("collected-static/catalog");
    let name = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("shop.") && Path::new(n).extension().is_some_and(|e| e == "css") && n != "shop.css")
        .expect("a hashed shop.css");
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_inputs_skip_migrate_and_collectstatic() {
    if !require(
        "unchanged_inputs_skip_migrate_and_collectstatic",
        &[Requirement::Root, Requirement::Nginx, Requirement::Python],
    ) {
        return;
    }
    let s = Setup::new("steps-skip");
    let _instances = Instances(s.root.clone(), s.slots.clone());
    let port = s.nginx.port;
    let releases = s.root.join("releases");

    let mut first = s.run("v1", "r1", "a", None);
    deploy(&mut first).await;
    if crate::support::venv::uv().is_some() {
        let cfg = std::fs::read_to_string(releases.join("r1/venv/pyvenv.cfg")).unwrap();
        assert!(cfg.contains("uv = "), "the venv was not made by uv:\n{cfg}\n{}", first.log_text());
    }

    // v2 adds a migration: migrate runs in full; its static files are v1's, reused.
    let mut second = s.run("v2", "r2", "b", Some(("a", "r1")));
    deploy(&mut second).await;
    let log = second.log_text();
    assert!(log.contains("not skipped: its inputs changed"), "{log}");
    assert!(log.contains("gate passed: applying catalog.0002_product_description"), "{log}");
    assert!(log.contains("skipped collectstatic"), "{log}");
    assert_eq!(get(port, "/"), Some((200, "v2".into())));

    // Only the version string changes: both steps skip, and the new release serves, without a failed request.
    let traffic = Traffic::start(port);
    let mut third = s.run("v3-same-inputs", "r3", "a", Some(("b", "r2")));
    deploy(&mut third).await;
    let (ok, failed, last) = traffic.finish();
    let log = third.log_text();
    assert!(failed.is_empty(), "failed requests: {failed:?}\n{log}");
    assert!(ok > 10, "too little traffic to mean anything: {ok}");
    assert_eq!(last, "v3-same-inputs");
    assert!(log.contains("skipped: the migration files"), "{log}");
    assert!(!log.contains("gate passed"), "{log}");
    assert!(log.contains("skipped collectstatic"), "{log}");
    let (r2_css, r3_css) = (hashed_css(&releases.join("r2")), hashed_css(&releases.join("r3")));
    assert_eq!(r2_css.file_name(), r3_css.file_name());
    assert_eq!(std::fs::metadata(&r2_css).unwrap().ino(), std::fs::metadata(&r3_css).unwrap().ino(), "not linked");

    // A changed stylesheet: collected again (a new hashed name); the migrations still skip.
    let mut fourth = s.run("v3-static-change", "r4", "b", Some(("a", "r3")));
    deploy(&mut fourth).await;
    let log = fourth.log_text();
    assert!(log.contains("not reused: its inputs changed"), "{log}");
    assert!(log.contains("skipped: the migration files"), "{log}");
    let r4_css = hashed_css(&releases.join("r4"));
    assert_ne!(r4_css.file_name(), r3_css.file_name());
    assert!(std::fs::read_to_string(&r4_css).unwrap().contains("#27a"));
    assert_eq!(get(port, "/"), Some((200, "v3-static-change".into())));

    // Undo (of a deploy whose migrate skipped): the previous release serves again, its linked files intact.
    if let Err((step, e)) = fourth.undo().await {
        panic!("undo of {step} failed: {e:?}\n{}", fourth.log_text());
    }
    assert_eq!(get(port, "/"), Some((200, "v3-same-inputs".into())));
    assert!(r3_css.exists() && r2_css.exists());
}
