//! Builders for the kinds' unit tests: a step with the given fields (and its settings), and a step context on
//! the local host.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use zdd_engine::events::EventSink;
use zdd_engine::host::LocalHost;
use zdd_engine::kind::{DeployTarget, MemoryJournal, StepCtx, UndoCtx};
use zdd_engine::plan::{FieldValue, Fields, Plan, Step, StepId, StepPolicy, Value};
use zdd_engine::redact::Redactor;
use zdd_engine::settings::{SettingsCtx, StepSettings};
use zdd_engine::source::{FileId, SourceMap, Span};

/// Step `name` of `kind` with `fields` (a repeated name is a repeated field), as validation would leave it:
/// with the settings its kind builds (against the plan directory `/`), if the fields make any.
pub(crate) fn step(name: &str, kind: &str, fields: &[(&str, Value)]) -> Step {
    step_in(Path::new("/"), name, kind, fields)
}

/// Like [`step`], in a plan whose directory is `base_dir`.
pub(crate) fn step_in(base_dir: &Path, name: &str, kind: &str, fields: &[(&str, Value)]) -> Step {
    let span = Span::new(FileId(0), 0, 0);
    let mut map: BTreeMap<String, Vec<FieldValue>> = BTreeMap::new();
    for (k, v) in fields {
        map.entry((*k).to_owned()).or_default().push(FieldValue {
            value: Some(v.clone()),
            props: BTreeMap::new(),
            span,
        });
    }
    let mut step = Step {
        id: StepId(0),
        name: name.into(),
        kind: kind.into(),
        needs: vec![],
        policy: StepPolicy::default(),
        fields: Fields { map },
        settings: StepSettings::default(),
        description: None,
        host: None,
        span,
    };
    if let Some(Ok(settings)) = crate::builtin().get(kind).map(|k| k.settings(&SettingsCtx::new(&step, base_dir))) {
        step.settings = settings;
    }
    step
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
            stable_after: zdd_engine::plan::DEFAULT_STABLE_AFTER,
            defaults: StepPolicy::default(),
            fleet: zdd_engine::plan::fleet::Fleet::default(),
            steps: vec![],
            graph: zdd_engine::graph::StepGraph::default(),
        }),
        journal,
        io: UndoCtx {
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
            redactor: Redactor::new(),
            state_dir: dir.to_path_buf(),
        },
    }
}

/// One answer of a [`FakeProxy`]: status, the `X-Zdd-Upstream` it names (none: no header), body.
pub(crate) type FakeAnswer = (u16, Option<&'static str>, &'static str);

/// An HTTP server on 127.0.0.1 standing in for Nginx behind which two instances answer: the `n`th request
/// (from 0) gets `answer(n)`. It records whether each request carried `X-Zdd-Probe`.
pub(crate) struct FakeProxy {
    pub base: String,
    pub probes: Arc<std::sync::Mutex<Vec<bool>>>,
}

impl FakeProxy {
    pub(crate) fn start(answer: impl Fn(usize) -> FakeAnswer + Send + 'static) -> Self {
        use std::io::{BufRead as _, BufReader, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let probes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = probes.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                let mut probe = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    probe |= line.to_ascii_lowercase().starts_with("x-zdd-probe:");
                }
                seen.lock().expect("probes").push(probe);
                let (status, upstream, body) = answer(n);
                let header = upstream.map(|u| format!("x-zdd-upstream: {u}\r\n")).unwrap_or_default();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\n{header}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { base, probes }
    }

    /// How many requests it answered.
    pub(crate) fn requests(&self) -> usize {
        self.probes.lock().expect("probes").len()
    }
}
