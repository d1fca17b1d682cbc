//! Builders for the kinds' unit tests: a step with the given fields, and a step context on the local host.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use zdd_engine::events::EventSink;
use zdd_engine::host::LocalHost;
use zdd_engine::kind::{DeployTarget, MemoryJournal, StepCtx};
use zdd_engine::plan::{FieldValue, Fields, Plan, Step, StepId, StepPolicy, Value};
use zdd_engine::redact::Redactor;
use zdd_engine::source::{FileId, SourceMap, Span};

/// Step `name` of `kind` with `fields` (a repeated name is a repeated field), as validation would leave it.
pub(crate) fn step(name: &str, kind: &str, fields: &[(&str, Value)]) -> Step {
    let span = Span::new(FileId(0), 0, 0);
    let mut map: BTreeMap<String, Vec<FieldValue>> = BTreeMap::new();
    for (k, v) in fields {
        map.entry((*k).to_owned()).or_default().push(FieldValue {
            value: Some(v.clone()),
            props: BTreeMap::new(),
            span,
        });
    }
    Step {
        id: StepId(0),
        name: name.into(),
        kind: kind.into(),
        needs: vec![],
        policy: StepPolicy::default(),
        fields: Fields { map },
        description: None,
        span,
    }
}

/// The context of step `step` deploying release `r9` into slot `b` (slot `a` live), with `dir` as the plan's
/// directory and the state directory, events discarded.
pub(crate) fn ctx(step: &str, dir: &Path, journal: Arc<MemoryJournal>) -> StepCtx {
    StepCtx {
        plan: Arc::new(Plan {
            name: "t".into(),
            base_dir: dir.to_path_buf(),
            sources: SourceMap::new(),
            vars: vec![],
            slots: vec!["a".into(), "b".into()],
            state_dir: None,
            defaults: StepPolicy::default(),
            steps: vec![],
            graph: zdd_engine::graph::StepGraph::default(),
        }),
        step: step.into(),
        target: DeployTarget {
            release: "r9".into(),
            slot: "b".into(),
            live_slot: Some("a".into()),
            live_release: None,
            rollback: false,
        },
        host: Arc::new(LocalHost::new()),
        events: EventSink::discard(),
        cancel: tokio_util::sync::CancellationToken::new(),
        journal,
        redactor: Redactor::new(),
        state_dir: dir.to_path_buf(),
    }
}
