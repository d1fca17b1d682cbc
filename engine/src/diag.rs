//! Plan diagnostics: one error or warning about a plan, with a span, a stable code and a help line.
//!
//! Validation collects every diagnostic it finds into [`Diagnostics`] rather than stopping at the first;
//! rendering (miette, with `file:line:col` and the source line underlined) happens once, at the edge.

mod code;

pub use code::{Code, UnknownCode};

use crate::source::{SourceMap, Span};

/// How bad a diagnostic is. Errors make a plan invalid; warnings are shown and let it pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable code, e.g. `zdd::unknown-property`; `zdd explain CODE` prints the book's entry for it.
    pub code: Code,
    /// What is wrong, naming the offending value.
    pub message: String,
    /// Where. `None` only for problems with no place in a file (e.g. a `--var` on the command line).
    pub span: Option<Span>,
    /// Short text under the underline.
    pub label: String,
    /// How to fix it.
    pub help: Option<String>,
    /// Other places worth pointing at (the first definition of a duplicate, ...).
    pub related: Vec<(Span, String)>,
}

impl Diagnostic {
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            span: None,
            label: String::new(),
            help: None,
            related: Vec::new(),
        }
    }

    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, ..Self::error(code, message) }
    }

    #[must_use]
    pub fn at(mut self, span: Span, label: impl Into<String>) -> Self {
        self.span = Some(span);
        self.label = label.into();
        self
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    #[must_use]
    pub fn related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }
}

/// Every diagnostic found, in source order once sorted.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// Sort by file and position so output reads top to bottom.
    pub fn sort(&mut self) {
        self.items.sort_by_key(|d| d.span.map(|s| (s.file, s.offset)));
    }

    /// Render all diagnostics for a terminal (or plain text when `color` is false).
    pub fn render(&self, sources: &SourceMap, color: bool) -> String {
        crate::plan::render::render_diagnostics(self, sources, color)
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}
