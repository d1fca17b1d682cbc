//! Each kind's effect and undo on the local host, where a deploy test would be too coarse: the symlink's undo
//! from either state, release copies (git-tracked files only, shared links, pruning), the django kind's undo
//! command, the health gate failing at once when its service is dead, log-check catching a traceback, smoke
//! reporting every failed check, packages already installed needing nothing.

use crate::driver;
use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::env::TestDir;
use zdd_engine::kind::StepError;

fn plan(dir: &TestDir, body: &str) -> std::path::PathBuf {
    let path = dir.join("plan.kdl");
    std::fs::write(&path, format!("plan \"kinds\"\nslots \"a\" \"b\"\n{body}")).unwrap();
    path
}

fn run_for(dir: &TestDir, body: &str, target: zdd_engine::kind::DeployTarget) -> driver::Run {
    let plan = driver::read_plan(&plan(dir, body), &[], &target, &dir.join("state"));
    driver::Run::new(plan, target, &dir.join("state"))
}

fn run_of(dir: &TestDir, body: &str) -> driver::Run {
    run_for(dir, body, driver::target("r2", "b", Some(("a", "r1"))))
}

#[tokio::test]
async fn symlink_undo_restores_or_removes() {
    let dir = TestDir::new("steps-symlink");
    let link = dir.join("current");
    let body = format!(
        "step \"current\" kind=\"symlink\" {{\n link \"{}\"\n target \"{}/r2\"\n}}\n",
        link.display(),
        dir.path().display()
    );

    // No link before: undo removes it.
    let mut run = run_of(&dir, &body);
    run.run(None).await.unwrap();
    assert_eq!(std::fs::read_link(&link).unwrap(), dir.join("r2"));
    run.undo().await.unwrap();
    assert!(std::fs::symlink_metadata(&link).is_err());

    // A link before: undo points it back.
    std::os::unix::fs::symlink(dir.join("r1"), &link).unwrap();
    let mut run = run_of(&dir, &body);
    run.run(None).await.unwrap();
    assert_eq!(std::fs::read_link(&link).unwrap(), dir.join("r2"));
    run.undo().await.unwrap();
    assert_eq!(std::fs::read_link(&link).unwrap(), dir.join("r1"));
}

#[tokio::test]
async fn release_copies_tracked_files_links_shared_and_prunes() {
    let dir = TestDir::new("steps-release");
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("app/__pycache__")).unwrap();
    std::fs::write(src.join("manage.py"), "print('hi')\n").unwrap();
    std::fs::write(src.join("app/views.py"), "x = 1\n").unwrap();
    std::fs::write(src.join("app/__pycache__/views.pyc"), "junk").unwrap();
    std::fs::write(src.join("local.env"), "SECRET=1\n").unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(&src)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "manage.py", "app/views.py"]);
    git(&["commit", "-qm", "init"]);

    let root = dir.join("srv");
    std::fs::create_dir_all(root.join("shared")).unwrap();
    std::fs::write(root.join("shared/app.env"), "A=1\n").unwrap();
    for old in ["r0a", "r0b", "r0c", "r1"] {
        std::fs::create_dir_all(root.join("releases").join(old)).unwrap();
    }
    let body = format!(
        "step \"release\" kind=\"release\" {{\n root \"{}\"\n source \"{}\"\n shared \"media/\" \"app.env\"\n keep 3\n}}\n",
        root.display(),
        src.display()
    );
    let mut run = run_of(&dir, &body);
    run.run(None).await.unwrap_or_else(|(s, e)| panic!("{s}: {e:?}\n{}", run.log_text()));
    let release = root.join("releases/r2");
    assert!(release.join("manage.py").exists() && release.join("app/views.py").exists());
    assert!(!release.join("local.env").exists(), "an untracked file was copied");
    assert!(!release.join("app/__pycache__").exists());
    assert_eq!(std::fs::read_link(release.join("media")).unwrap(), root.join("shared/media"));
    assert!(root.join("shared/media").is_dir(), "a shared directory is created");
    assert_eq!(std::fs::read_link(release.join("app.env")).unwrap(), root.join("shared/app.env"));
    // keep 3: r2 (new), r1 (live), r0c (its predecessor); r0a and r0b pruned.
    let mut left: Vec<String> = std::fs::read_dir(root.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["r0c", "r1", "r2"]);

    run.undo().await.unwrap();
    assert!(!release.exists());
}

#[tokio::test]
async fn release_refuses_a_missing_shared_file() {
    let dir = TestDir::new("steps-release-shared");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/manage.py"), "").unwrap();
    let body = format!(
        "step \"release\" kind=\"release\" {{\n root \"{0}/srv\"\n source \"{0}/src\"\n copy \"all\"\n shared \"prod.env\"\n}}\n",
        dir.path().display()
    );
    let mut run = run_of(&dir, &body);
    let (_, err) = run.run(None).await.unwrap_err();
    assert!(matches!(&err, StepError::Fatal { message, .. } if message.contains("prod.env")), "{err:?}");
    run.undo().await.unwrap();
    assert!(!dir.join("srv/releases/r2").exists());
}

#[tokio::test]
async fn release_refuses_a_shared_path_through_a_symlink_from_the_source() {
    let dir = TestDir::new("steps-release-shared-symlink");
    // The checkout has `media` as a symlink to a folder outside the release: linking `media/uploads` would
    // remove and replace `outside/uploads` through it.
    let outside = dir.join("outside");
    std::fs::create_dir_all(outside.join("uploads")).unwrap();
    std::fs::write(outside.join("uploads/keep.txt"), "precious").unwrap();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/manage.py"), "").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("src/media")).unwrap();
    let body = format!(
        "step \"release\" kind=\"release\" {{\n root \"{0}/srv\"\n source \"{0}/src\"\n copy \"all\"\n shared \"media/uploads/\"\n}}\n",
        dir.path().display()
    );
    let mut run = run_of(&dir, &body);
    let (_, err) = run.run(None).await.unwrap_err();
    assert!(
        matches!(&err, StepError::Fatal { message, .. } if message.contains("symlink") && message.contains("media")),
        "{err:?}"
    );
    assert_eq!(std::fs::read_to_string(outside.join("uploads/keep.txt")).unwrap(), "precious");
    assert!(std::fs::symlink_metadata(outside.join("uploads")).unwrap().is_dir(), "replaced through the symlink");
    run.undo().await.unwrap();
    assert!(!dir.join("srv/releases/r2").exists());
}

#[tokio::test]
async fn django_kind_runs_and_undoes_with_the_env_file_hidden() {
    let dir = TestDir::new("steps-django");
    let release = dir.join("srv/releases/r2");
    std::fs::create_dir_all(&release).unwrap();
    // A stand-in manage.py: records its arguments and the env value it saw.
    std::fs::write(
        release.join("manage.py"),
        "import os, sys\nopen('calls', 'a').write(' '.join(sys.argv[1:]) + ' ' + os.environ['TOKEN'] + '\\n')\nprint('token is', os.environ['TOKEN'])\n",
    )
    .unwrap();
    std::fs::write(dir.join("app.env"), "TOKEN=very-secret-token\n").unwrap();
    let body = format!(
        "step \"cache\" kind=\"django\" {{\n root \"{0}/srv\"\n python \"/usr/bin/python3\"\n env-file \"{0}/app.env\"\n command \"createcachetable\"\n undo \"dropcache\"\n}}\n",
        dir.path().display()
    );
    let mut run = run_of(&dir, &body);
    run.run(None).await.unwrap();
    run.undo().await.unwrap();
    let calls = std::fs::read_to_string(release.join("calls")).unwrap();
    assert_eq!(calls, "createcachetable very-secret-token\ndropcache very-secret-token\ndropcache very-secret-token\n");
    let log = run.log_text();
    assert!(log.contains("token is ***") && !log.contains("very-secret-token"), "{log}");
}

#[tokio::test]
async fn health_gate_fails_at_once_when_the_service_is_dead() {
    let dir = TestDir::new("steps-health-dead");
    let root = dir.join("srv");
    std::fs::create_dir_all(root.join("run")).unwrap();
    // The slot's record names a process that has exited.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    std::fs::write(
        root.join("run/b.json"),
        format!("{{\"release\":\"r2\",\"slot\":\"b\",\"argv\":[\"gunicorn\"],\"cwd\":\"/\",\"pid\":{pid}}}"),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("log")).unwrap();
    std::fs::write(root.join("log/shop-b.log"), "[ERROR] Worker failed to boot.\n").unwrap();
    let body = format!(
        "step \"web\" kind=\"service\" {{\n app \"shop\"\n root \"{}\"\n wsgi \"shop.wsgi:application\"\n manager \"process\"\n}}\nstep \"health\" kind=\"health-gate\" {{\n service \"web\"\n path \"/health/\"\n within \"30s\"\n}}\n",
        root.display()
    );
    let run = run_of(&dir, &body);
    let step = run.plan.step_by_name("health").unwrap().clone();
    let kinds = zdd_steps::builtin();
    let started = Instant::now();
    let err = kinds.get("health-gate").unwrap().run(&step, &run.ctx("health")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let text = format!("{err:?}");
    assert!(matches!(err, StepError::Fatal { .. }) && text.contains("Worker failed to boot"), "{text}");
}

#[tokio::test]
async fn log_check_catches_a_traceback_written_after_it_starts() {
    let dir = TestDir::new("steps-logcheck");
    let root = dir.join("srv");
    std::fs::create_dir_all(root.join("log")).unwrap();
    let log = root.join("log/shop-b.log");
    std::fs::write(&log, "Traceback (most recent call last): an old one, before the step\n").unwrap();
    let body = format!(
        "step \"web\" kind=\"service\" {{\n app \"shop\"\n root \"{}\"\n wsgi \"shop.wsgi:application\"\n manager \"process\"\n}}\nstep \"logs\" kind=\"log-check\" {{\n service \"web\"\n window \"3s\"\n}}\n",
        root.display()
    );
    let run = run_of(&dir, &body);
    let step = run.plan.step_by_name("logs").unwrap().clone();
    let kinds = zdd_steps::builtin();
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            std::thread::sleep(Duration::from_millis(700));
            let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
            writeln!(f, "Traceback (most recent call last):\n  File \"views.py\"\nZeroDivisionError").unwrap();
        })
    };
    let started = Instant::now();
    let err = kinds.get("log-check").unwrap().run(&step, &run.ctx("logs")).await.unwrap_err();
    writer.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "a denied line must fail before the window ends");
    let text = format!("{err:?}");
    assert!(text.contains("1 denied line") && !text.contains("an old one"), "{text}");

    // Nothing new: the window passes.
    let started = Instant::now();
    kinds.get("log-check").unwrap().run(&step, &run.ctx("logs")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(3));
}

#[tokio::test]
async fn packages_already_installed_need_nothing() {
    let dir = TestDir::new("steps-packages");
    let mut run = run_of(&dir, "step \"prepare\" kind=\"packages\" {\n install \"coreutils\" \"bash\"\n}\n");
    run.run(None).await.unwrap();
    assert!(run.log_text().contains("already installed: coreutils bash"), "{}", run.log_text());
}

#[test]
fn every_field_of_every_kind_is_in_the_book() {
    let book = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src/step-kinds.md")).unwrap();
    let kinds = zdd_steps::builtin();
    for name in [
        "release",
        "python-env",
        "django",
        "collectstatic",
        "deploy-check",
        "migrate",
        "service",
        "health-gate",
        "proxy-switch",
        "canary",
        "smoke",
        "log-check",
        "symlink",
        "drain-stop",
        "packages",
        "worker",
        "worker-retire",
        "beat",
        "image",
        "maintenance",
    ] {
        let spec = kinds.spec(name).unwrap_or_else(|| panic!("kind {name} is not registered"));
        let section = book.split(&format!("\n## {name}\n")).nth(1).unwrap_or_else(|| panic!("no section for {name}"));
        let section = section.split("\n## ").next().unwrap();
        for field in spec.fields {
            assert!(section.contains(&format!("| `{}` |", field.name)), "book: {name} lacks field `{}`", field.name);
        }
    }
}

#[tokio::test]
async fn proxy_switch_restores_the_site_when_nginx_rejects_it() {
    use support::env::{Requirement, require};
    if !require("proxy_switch_restores_the_site_when_nginx_rejects_it", &[Requirement::Root, Requirement::Nginx]) {
        return;
    }
    let dir = TestDir::new("steps-nginx-t");
    let nginx = support::nginx::Nginx::start(dir.path());
    let site = nginx.sites_dir.join("shop.conf");
    let good = format!("server {{ listen 127.0.0.1:{}; return 204; }}\n", nginx.port);
    nginx.write_site_and_reload("shop", &good);
    // A template Nginx rejects (an unknown directive); it names the upstream, as port mode requires.
    let template = dir.join("broken.conf.hbs");
    std::fs::write(
        &template,
        "upstream {{app}}_app { server {{upstream}}; }\n\
         server { listen {{listen}}; add_header X-Zdd-Upstream $upstream_addr; no_such_directive on; }\n",
    )
    .unwrap();
    let body = format!(
        "step \"switch\" kind=\"proxy-switch\" {{\n app \"shop\"\n root \"{root}\"\n mode \"port\"\n site-conf \"{site}\"\n nginx \"{bin} -p {prefix}\"\n nginx-conf \"{conf}\"\n pid-file \"{prefix}/nginx.pid\"\n template \"{template}\"\n listen \"127.0.0.1:{port}\"\n}}\n",
        root = dir.join("srv").display(),
        site = site.display(),
        bin = support::nginx::NGINX,
        prefix = nginx.prefix.display(),
        conf = nginx.conf.display(),
        template = template.display(),
        port = nginx.port,
    );
    let target = driver::target("r2", "8002", Some(("8001", "r1")));
    let plan_path = dir.join("plan.kdl");
    std::fs::write(&plan_path, format!("plan \"kinds\"\nslots \"8001\" \"8002\"\n{body}")).unwrap();
    let plan = driver::read_plan(&plan_path, &[], &target, &dir.join("state"));
    let mut run = driver::Run::new(plan, target, &dir.join("state"));
    let (_, err) = run.run(None).await.unwrap_err();
    assert!(matches!(&err, StepError::Fatal { message, .. } if message.contains("previous file restored")), "{err:?}");
    assert_eq!(std::fs::read_to_string(&site).unwrap(), good, "the previous site file must be back");
    // Nginx still serves the old site.
    assert_eq!(support::proc::http_get_status(nginx.port, "/"), Some(204));
}

/// The `maintenance` kind writes the page and then the flag the site tests, refuses a site without the
/// maintenance block (changing nothing), and its undo puts the flag back as it was, from either state.
#[tokio::test]
async fn maintenance_switches_the_flag_and_its_undo_restores_it() {
    let dir = TestDir::new("steps-maintenance");
    let (site, flag, page) = (dir.join("site.conf"), dir.join("maintenance/on"), dir.join("maintenance/index.html"));
    let body = |state: &str| {
        format!(
            "step \"maint\" kind=\"maintenance\" {{\n proxy-switch \"switch\"\n state \"{state}\"\n}}\n\
             step \"switch\" kind=\"proxy-switch\" {{\n app \"shop\"\n root \"{}\"\n site-conf \"{}\"\n}}\n",
            dir.path().display(),
            site.display()
        )
    };

    // A site an older zdd wrote: refused, nothing written.
    std::fs::write(&site, "server { listen 80; }\n").unwrap();
    let mut run = run_of(&dir, &body("on"));
    let (step, err) = run.run(Some("maint")).await.unwrap_err();
    assert_eq!(step, "maint");
    assert!(err.to_string().contains("zdd::maintenance-unavailable"), "{err}");
    assert!(!flag.exists() && !page.exists());

    // The block is there: page, then flag; the undo removes the flag it wrote.
    std::fs::write(&site, "set $zdd_maintenance \"\";\n").unwrap();
    let mut run = run_of(&dir, &body("on"));
    run.run(Some("maint")).await.unwrap();
    assert!(flag.exists());
    assert!(std::fs::read_to_string(&page).unwrap().contains("Down for maintenance"));
    run.undo().await.unwrap();
    assert!(!flag.exists());

    // Turned on by hand, then off by a step: the undo turns it on again.
    std::fs::write(&flag, "on\n").unwrap();
    let mut run = run_of(&dir, &body("off"));
    run.run(Some("maint")).await.unwrap();
    assert!(!flag.exists());
    run.undo().await.unwrap();
    assert!(flag.exists());
}
