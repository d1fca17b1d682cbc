//! Rendering diagnostics with miette: `╭─[file:line:col]`, the source line underlined, code and help.
//!
//! Colour only when asked (a terminal that wants it); otherwise the plain unicode theme, so logs, CI and tests
//! read the same text. Related places in the same file become extra labels; in other files, nested notes.

use std::fmt;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};

use crate::diag::{Code, Diagnostic, Diagnostics, Severity};
use crate::source::{SourceMap, Span};

/// Wide enough for a source line and its label; fixed so output does not depend on the terminal.
const WIDTH: usize = 100;

/// Render every diagnostic, in order, as one string (ending with a count line when there are errors, which
/// names `zdd explain` once rather than on every diagnostic).
pub fn render_diagnostics(diags: &Diagnostics, sources: &SourceMap, color: bool) -> String {
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(WIDTH)
        .with_wrap_lines(false)
        .with_links(false)
        .with_urls(false);
    let mut out = String::new();
    for d in diags.iter() {
        let report = Report::new(d, sources);
        if handler.render_report(&mut out, &report).is_err() {
            out.push_str(&format!("error[{}]: {}\n", d.code, d.message));
        }
        out.push('\n');
    }
    let errors = diags.iter().filter(|d| d.severity == Severity::Error).count();
    if errors > 0 {
        let plural = if errors == 1 { "" } else { "s" };
        out.push_str(&format!("{errors} error{plural} found (`zdd explain <code>` explains a code)\n"));
    }
    out
}

/// One diagnostic in miette's terms.
struct Report {
    message: String,
    code: Code,
    severity: miette::Severity,
    help: Option<String>,
    source: Option<NamedSource<String>>,
    labels: Vec<LabeledSpan>,
    related: Vec<Report>,
}

impl Report {
    fn new(d: &Diagnostic, sources: &SourceMap) -> Self {
        let mut labels = Vec::new();
        let mut related = Vec::new();
        let source = d.span.and_then(|span| {
            let file = sources.get(span.file)?;
            labels.push(LabeledSpan::new_primary_with_span(label(&d.label), miette_span(span, &file.text)));
            Some(NamedSource::new(&file.name, file.text.to_string()))
        });
        for (span, text) in &d.related {
            match (d.span, sources.get(span.file)) {
                (Some(primary), Some(file)) if primary.file == span.file => {
                    labels.push(LabeledSpan::new_with_span(label(text), miette_span(*span, &file.text)));
                }
                (_, Some(file)) => related.push(Report {
                    message: text.clone(),
                    code: d.code,
                    severity: miette::Severity::Advice,
                    help: None,
                    source: Some(NamedSource::new(&file.name, file.text.to_string())),
                    labels: vec![LabeledSpan::new_primary_with_span(None, miette_span(*span, &file.text))],
                    related: Vec::new(),
                }),
                (_, None) => {}
            }
        }
        Self {
            message: d.message.clone(),
            code: d.code,
            severity: match d.severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
            },
            help: d.help.clone(),
            source,
            labels,
            related,
        }
    }
}

fn label(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn miette_span(span: Span, text: &str) -> SourceSpan {
    let offset = span.offset.min(text.len());
    SourceSpan::new(offset.into(), span.len.min(text.len() - offset))
}

// Debug names the diagnostic; its source, labels and related reports are what miette renders.
#[allow(clippy::missing_fields_in_debug)]
impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report").field("code", &self.code).field("message", &self.message).finish()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        (self.severity != miette::Severity::Advice).then(|| Box::new(self.code) as Box<dyn fmt::Display>)
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        (!self.labels.is_empty()).then(|| Box::new(self.labels.iter().cloned()) as Box<dyn Iterator<Item = _>>)
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        (!self.related.is_empty())
            .then(|| Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic)) as Box<dyn Iterator<Item = _>>)
    }
}
