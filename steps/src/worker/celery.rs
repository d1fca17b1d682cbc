//! Talking to Celery workers through the broker, with the release's own `celery` and the plan's environment
//! (env file, `DJANGO_SETTINGS_MODULE`): `inspect ping` (which nodes answer), `inspect registered` (the tasks
//! a node knows), `inspect active` (the tasks it is running), `control cancel_consumer` / `add_consumer` (stop
//! or resume consuming a queue); and, without any worker, the tasks a release defines (its Celery app loaded
//! the way the worker loads it: `autodiscover_tasks()` included).
//!
//! Replies are read from `--json` output. A command no node answered exits non-zero ("No nodes replied"):
//! that is an empty reply, not an error.
//!
//! A question to one node (`--destination`) returns as soon as that node replies, so its window is generous: a
//! worker still starting its pool, or busy on a loaded host, can take seconds to read its control queue, and a
//! short window turned that into a failed deploy. A broadcast (`inspect ping` for a slot's node, whose full name
//! is not known yet) always waits out its window, so that one stays short and is asked again instead.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use zdd_engine::host::Command;
use zdd_engine::kind::{StepError, UndoCtx};

use super::config::WorkerConfig;
use crate::common::{quiet, tail};
use crate::service::instance::Instance;

/// How long a broadcast waits for replies (all of it: any node may answer).
const BROADCAST_WINDOW: Duration = Duration::from_secs(2);
/// How long a question to one node waits for its reply (it returns at the reply).
const NODE_WINDOW: Duration = Duration::from_secs(10);

/// The release's Python, loading its Celery app as the worker does, printing the task names it defines
/// (Celery's own `celery.*` tasks left out) as a JSON list.
const LIST_TASKS: &str = r#"
import json, os, sys
from celery.app.utils import find_app
app = find_app(sys.argv[1])
if os.environ.get("DJANGO_SETTINGS_MODULE"):
    import django
    django.setup()
app.loader.import_default_modules()
print(json.dumps(sorted(name for name in app.tasks if not name.startswith("celery."))))
"#;

/// `argv` run in the release directory with the environment a worker of `release` gets.
async fn command(ctx: &UndoCtx, cfg: &WorkerConfig, release: &str, argv: Vec<String>) -> Result<Command, StepError> {
    let inst = Instance {
        release: release.to_owned(),
        slot: cfg.instance_slot("control"),
        argv,
        cwd: cfg.release_dir(release),
        pid: None,
    };
    inst.command(&cfg.service(), ctx).await
}

/// `celery -A <app> <words> --json --timeout <window>`.
fn remote(cfg: &WorkerConfig, release: &str, words: &[&str], window: Duration) -> Vec<String> {
    let mut argv = vec![cfg.bin(release, "celery"), "-A".into(), cfg.celery_app.clone()];
    argv.extend(words.iter().map(|w| (*w).to_owned()));
    argv.extend(["--json".into(), "--timeout".into(), format!("{:.1}", window.as_secs_f64())]);
    argv
}

/// The replies of a remote-control command, by node. `inspect` prints one object; `control` a list of them.
pub fn parse_replies(stdout: &str) -> BTreeMap<String, Value> {
    let Some(start) = stdout.find(['{', '[']) else {
        return BTreeMap::new();
    };
    let mut stream = serde_json::Deserializer::from_str(&stdout[start..]).into_iter::<Value>();
    let mut replies = BTreeMap::new();
    match stream.next() {
        Some(Ok(Value::Object(map))) => replies.extend(map),
        Some(Ok(Value::Array(list))) => {
            for item in list {
                if let Value::Object(map) = item {
                    replies.extend(map);
                }
            }
        }
        _ => {}
    }
    replies
}

async fn ask(
    ctx: &UndoCtx,
    cfg: &WorkerConfig,
    release: &str,
    args: &[&str],
    window: Duration,
) -> Result<BTreeMap<String, Value>, StepError> {
    let cmd = command(ctx, cfg, release, remote(cfg, release, args, window)).await?;
    let out = quiet(ctx, &cmd).await?;
    Ok(parse_replies(&out.stdout_str()))
}

/// `node`'s reply to `words` (addressed to it alone); `None` if it did not answer within [`NODE_WINDOW`].
async fn ask_node(
    ctx: &UndoCtx,
    cfg: &WorkerConfig,
    release: &str,
    words: &[&str],
    node: &str,
) -> Result<Option<Value>, StepError> {
    let args: Vec<&str> = words.iter().copied().chain(["--destination", node]).collect();
    let mut replies = ask(ctx, cfg, release, &args, NODE_WINDOW).await?;
    Ok(replies.remove(node))
}

/// The full names of the nodes answering `inspect ping` whose names start with `prefix` (`<name>-<slot>@`).
pub async fn ping(ctx: &UndoCtx, cfg: &WorkerConfig, release: &str, prefix: &str) -> Result<Vec<String>, StepError> {
    let replies = ask(ctx, cfg, release, &["inspect", "ping"], BROADCAST_WINDOW).await?;
    Ok(replies.into_keys().filter(|node| node.starts_with(prefix)).collect())
}

/// The node of a worker that should be running (the live slot's), asked up to `attempts` times: one missed
/// broadcast window is not taken for a worker that is gone.
pub async fn running_node(
    ctx: &UndoCtx,
    cfg: &WorkerConfig,
    release: &str,
    prefix: &str,
    attempts: usize,
) -> Result<Option<String>, StepError> {
    for _ in 0..attempts {
        if let Some(node) = ping(ctx, cfg, release, prefix).await?.into_iter().next() {
            return Ok(Some(node));
        }
    }
    Ok(None)
}

/// The tasks `node` has registered; `None` if it did not answer.
pub async fn registered(
    ctx: &UndoCtx,
    cfg: &WorkerConfig,
    release: &str,
    node: &str,
) -> Result<Option<BTreeSet<String>>, StepError> {
    let reply = ask_node(ctx, cfg, release, &["inspect", "registered"], node).await?;
    Ok(reply.as_ref().map(task_names))
}

/// How many tasks `node` is running now (0 if it did not answer).
pub async fn active(ctx: &UndoCtx, cfg: &WorkerConfig, release: &str, node: &str) -> Result<usize, StepError> {
    let reply = ask_node(ctx, cfg, release, &["inspect", "active"], node).await?;
    Ok(reply.as_ref().and_then(Value::as_array).map_or(0, Vec::len))
}

/// `control cancel_consumer` / `add_consumer` for each queue on `node`; the nodes' answers, as text.
pub async fn consumers(
    ctx: &UndoCtx,
    cfg: &WorkerConfig,
    release: &str,
    action: Consumers,
    node: &str,
) -> Result<Vec<String>, StepError> {
    let mut said = Vec::new();
    for queue in &cfg.queues {
        match ask_node(ctx, cfg, release, &["control", action.command(), queue.as_str()], node).await? {
            Some(reply) => said.push(reply_text(&reply)),
            None => {
                return Err(StepError::failed(format!(
                    "{node} did not answer `{} {queue}` within {}s",
                    action.command(),
                    NODE_WINDOW.as_secs()
                )));
            }
        }
    }
    Ok(said)
}

/// Stop or resume consuming.
#[derive(Debug, Clone, Copy)]
pub enum Consumers {
    Cancel,
    Add,
}

impl Consumers {
    fn command(self) -> &'static str {
        match self {
            Consumers::Cancel => "cancel_consumer",
            Consumers::Add => "add_consumer",
        }
    }
}

/// The tasks `release` defines, from its own Celery app (no worker involved).
pub async fn release_tasks(ctx: &UndoCtx, cfg: &WorkerConfig, release: &str) -> Result<BTreeSet<String>, StepError> {
    let argv = vec![cfg.bin(release, "python"), "-c".into(), LIST_TASKS.into(), cfg.celery_app.clone()];
    let cmd = command(ctx, cfg, release, argv).await?;
    let out = quiet(ctx, &cmd).await?;
    let listed = out.success().then(|| serde_json::from_str::<Vec<String>>(out.stdout_str().trim()).ok()).flatten();
    listed.map(|names| names.into_iter().collect()).ok_or_else(|| {
        StepError::failed(format!(
            "could not list the tasks release {release}'s Celery app `{}` defines",
            cfg.celery_app
        ))
        .with_detail(ctx.redactor.redact(&tail(&out.stderr_str(), 20)))
    })
}

/// Task names from an `inspect registered` reply, Celery's own left out. Entries may carry attributes
/// (`name [rate_limit=10/s]`): the name is the first word.
fn task_names(reply: &Value) -> BTreeSet<String> {
    reply
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|entry| entry.split_whitespace().next())
        .filter(|name| !name.starts_with("celery."))
        .map(str::to_owned)
        .collect()
}

fn reply_text(reply: &Value) -> String {
    match reply.get("ok").or_else(|| reply.get("error")) {
        Some(Value::String(text)) => text.clone(),
        _ => reply.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inspect_and_control_replies() {
        let inspect =
            r#"{"celery-b@web1": ["proj.tasks.add", "celery.chord_unlock", "proj.tasks.mul [rate_limit=1/s]"]}"#;
        let replies = parse_replies(inspect);
        let names: Vec<String> = task_names(&replies["celery-b@web1"]).into_iter().collect();
        assert_eq!(names, ["proj.tasks.add", "proj.tasks.mul"]);
        let control = "[{\"celery-a@web1\": {\"ok\": \"no longer consuming from 'celery'\"}}]\n";
        let replies = parse_replies(control);
        assert_eq!(reply_text(&replies["celery-a@web1"]), "no longer consuming from 'celery'");
        assert!(parse_replies("Error: No nodes replied within time constraint\n").is_empty());
    }
}
