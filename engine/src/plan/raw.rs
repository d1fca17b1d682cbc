//! The raw layer: KDL text parsed (kdl v6, KDL 2.0) into plan nodes that keep every span. No I/O.
//!
//! [`parse`] turns one file's text into a [`RawDocument`]: the top-level nodes a plan may hold (`plan`,
//! `zdd-version`, `state-dir`, `slots`, `stable-after`, `var`, `include`, `defaults`, `step`, `repeat`), each keeping the spans of its name, arguments
//! and properties so that later stages point at the exact token. Children of `step`, `defaults` and `repeat` stay
//! generic [`RawNode`]s: what they may contain depends on the step's kind, which validation knows.
//! Unknown top-level nodes and properties of top-level nodes are reported here, with "did you mean".

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::plan::chunks;
use crate::plan::suggest::did_you_mean;
use crate::source::{FileId, Span};

/// The top-level nodes a plan file may contain, for "did you mean".
pub const TOP_LEVEL_NODES: &[&str] = &[
    "plan",
    "zdd-version",
    "state-dir",
    "slots",
    "stable-after",
    "var",
    "include",
    "defaults",
    "hosts",
    "ssh-config",
    "step",
    "repeat",
];

/// A KDL scalar as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Int(i128),
    Float(f64),
    Bool(bool),
    Null,
}

impl Scalar {
    /// The value as text (for types that accept a bare number or boolean, like ports or variable defaults).
    pub fn text(&self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s.clone()),
            Scalar::Int(i) => Some(i.to_string()),
            Scalar::Float(f) => Some(f.to_string()),
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::Null => None,
        }
    }

    /// What the value is, in words, for type errors.
    pub fn describe(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "a string",
            Scalar::Int(_) => "an integer",
            Scalar::Float(_) => "a number",
            Scalar::Bool(_) => "a boolean",
            Scalar::Null => "#null",
        }
    }
}

/// A value with the span of its token.
#[derive(Debug, Clone, PartialEq)]
pub struct RawValue {
    pub value: Scalar,
    pub span: Span,
}

/// `name=value`, with the spans of the name and of the value.
#[derive(Debug, Clone, PartialEq)]
pub struct RawProp {
    pub name: String,
    pub name_span: Span,
    pub value: RawValue,
}

/// A KDL node with spans: name, arguments, properties (in source order), children.
#[derive(Debug, Clone, PartialEq)]
pub struct RawNode {
    pub name: String,
    pub name_span: Span,
    pub args: Vec<RawValue>,
    pub props: Vec<RawProp>,
    pub children: Vec<RawNode>,
    /// Whether the node had a `{ ... }` block (even an empty one).
    pub has_block: bool,
    /// The whole node, children included.
    pub span: Span,
}

impl RawNode {
    pub fn prop(&self, name: &str) -> Option<&RawProp> {
        self.props.iter().rev().find(|p| p.name == name)
    }
}

/// One top-level node of a plan file, sorted by what it is.
#[derive(Debug, Clone, PartialEq)]
pub enum RawItem {
    /// `plan "name"`.
    Plan(RawNode),
    /// `zdd-version ">=0.2"` (see [`crate::plan::version_pin`]).
    ZddVersion(RawNode),
    /// `state-dir "/var/lib/zdd/shop"`.
    StateDir(RawNode),
    /// `slots "a" "b"`.
    Slots(RawNode),
    /// `stable-after "10m"`: how long a release must be live, without failing, to be stable (see
    /// [`crate::state`]).
    StableAfter(RawNode),
    /// `var "name" "default" secret=#true doc="..."`.
    Var(RawNode),
    /// `include "relative.kdl"`.
    Include(RawNode),
    /// `defaults { timeout "2m"; retry attempts=2 }`.
    Defaults(RawNode),
    /// `hosts "web" "web1" "deploy@10.0.0.5:2222"` (see [`crate::plan::fleet`]).
    Hosts(RawNode),
    /// `ssh-config "deploy/ssh_config"`.
    SshConfig(RawNode),
    /// `step "name" kind="exec" { ... }`.
    Step(RawNode),
    /// `repeat "lane" in="{{lanes}}" { step ... }` (see [`crate::plan::repeat`]).
    Repeat(RawNode),
}

impl RawItem {
    pub fn node(&self) -> &RawNode {
        match self {
            RawItem::Plan(n)
            | RawItem::ZddVersion(n)
            | RawItem::StateDir(n)
            | RawItem::Slots(n)
            | RawItem::StableAfter(n)
            | RawItem::Var(n)
            | RawItem::Include(n)
            | RawItem::Defaults(n)
            | RawItem::Hosts(n)
            | RawItem::SshConfig(n)
            | RawItem::Step(n)
            | RawItem::Repeat(n) => n,
        }
    }
}

/// One parsed plan file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawDocument {
    pub items: Vec<RawItem>,
}

/// Parse one file. Always returns a document (empty when the KDL itself does not parse) and the problems found.
pub fn parse(file: FileId, text: &str) -> (RawDocument, Diagnostics) {
    let mut diags = Diagnostics::new();
    if let Some(offset) = too_deep(text) {
        diags.push(
            Diagnostic::error(Code::TooDeep, format!("blocks are nested more than {MAX_NESTING} deep"))
                .at(Span::new(file, offset, 1), "too deep")
                .help("a plan nests a few levels (`step { retry ... }`): look for a stray `{` or a missing `}`"),
        );
        return (RawDocument::default(), diags);
    }
    if let Some(offset) = slashdash_run(text) {
        diags.push(
            Diagnostic::error(Code::SlashdashRun, "a `/-` right after another `/-`")
                .at(Span::new(file, offset, 2), "second `/-` in a row")
                .help("one `/-` comments out the node, argument or block after it, and KDL allows no second one: remove it"),
        );
        return (RawDocument::default(), diags);
    }
    let pieces = match parse_kdl(text) {
        Ok(pieces) => pieces,
        Err(err) => {
            diags.push(kdl_error(file, text, &err));
            return (RawDocument::default(), diags);
        }
    };
    let mut items = Vec::new();
    let nodes = pieces.iter().flat_map(|(base, doc)| {
        let conv = Converter { file, text, base: *base };
        doc.nodes().iter().map(move |n| conv.node(n))
    });
    for raw in nodes {
        let item = match raw.name.as_str() {
            "plan" => RawItem::Plan(raw),
            "zdd-version" => RawItem::ZddVersion(raw),
            "state-dir" => RawItem::StateDir(raw),
            "slots" => RawItem::Slots(raw),
            "stable-after" => RawItem::StableAfter(raw),
            "var" => RawItem::Var(raw),
            "include" => RawItem::Include(raw),
            "defaults" => RawItem::Defaults(raw),
            "hosts" => RawItem::Hosts(raw),
            "ssh-config" => RawItem::SshConfig(raw),
            "step" => RawItem::Step(raw),
            "repeat" => RawItem::Repeat(raw),
            other => {
                let mut d = Diagnostic::error(Code::UnknownNode, format!("unknown top-level node `{other}`"))
                    .at(raw.name_span, "not a plan node");
                d = d.help(match did_you_mean(other, TOP_LEVEL_NODES.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? A plan's top level holds: {}", TOP_LEVEL_NODES.join(", ")),
                    None => format!("a plan's top level holds: {}", TOP_LEVEL_NODES.join(", ")),
                });
                diags.push(d);
                continue;
            }
        };
        check_top_level_props(&item, &mut diags);
        items.push(item);
    }
    (RawDocument { items }, diags)
}

/// The properties each top-level node accepts.
fn allowed_props(item: &RawItem) -> &'static [&'static str] {
    match item {
        RawItem::Var(_) => &["secret", "doc"],
        RawItem::Step(_) => &["kind", "host", "role"],
        RawItem::Repeat(_) => &["in", "serial"],
        _ => &[],
    }
}

fn check_top_level_props(item: &RawItem, diags: &mut Diagnostics) {
    let node = item.node();
    let allowed = allowed_props(item);
    for prop in &node.props {
        if allowed.contains(&prop.name.as_str()) {
            continue;
        }
        diags.push(unknown_property(&node.name, &prop.name, prop.name_span, allowed));
    }
}

/// `zdd::unknown-property` with "did you mean" over the allowed names.
pub fn unknown_property(node: &str, prop: &str, span: Span, allowed: &[&str]) -> Diagnostic {
    let d = Diagnostic::error(Code::UnknownProperty, format!("unknown property `{prop}` on `{node}`"))
        .at(span, "unknown property");
    let list = if allowed.is_empty() {
        format!("`{node}` takes no properties")
    } else {
        format!("`{node}` takes: {}", allowed.join(", "))
    };
    match did_you_mean(prop, allowed.iter().copied()) {
        Some(s) => d.help(format!("did you mean `{s}`? {list}")),
        None => d.help(list),
    }
}

/// The first useful message of a KDL parse error, with its span.
fn kdl_error(file: FileId, text: &str, err: &kdl::KdlError) -> Diagnostic {
    let first = err.diagnostics.iter().find(|d| d.message.is_some()).or_else(|| err.diagnostics.first());
    let Some(first) = first else {
        return Diagnostic::error(Code::KdlSyntax, "the file is not valid KDL 2.0")
            .at(Span::new(file, 0, 0), "here")
            .help("see https://kdl.dev for the syntax");
    };
    let message = first.message.clone().unwrap_or_else(|| "the file is not valid KDL 2.0".to_owned());
    let offset = first.span.offset().min(text.len());
    let len = first.span.len().min(text.len() - offset);
    let help = first.help.clone().unwrap_or_else(|| {
        "plans are KDL 2.0: strings in double quotes, booleans `#true`/`#false`, properties `name=value`".to_owned()
    });
    Diagnostic::error(Code::KdlSyntax, format!("invalid KDL: {message}"))
        .at(Span::new(file, offset, len), first.label.clone().unwrap_or_else(|| "here".to_owned()))
        .help(help)
}

/// Parse the KDL, in pieces on several threads when the file is large (see [`crate::plan::chunks`]). Each
/// document comes with the offset of its piece in `text`.
/// The KDL parser recurses once per nested block, on threads with small stacks: deeper nesting is refused
/// before parsing (found by fuzzing: a few hundred `{` overflowed the stack). Braces are counted everywhere,
/// strings included, so this is conservative; a plan needs two or three levels.
pub const MAX_NESTING: usize = 32;

/// The offset of the first `{` nested deeper than [`MAX_NESTING`], if any.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// The offset of a `/-` that follows another `/-` with nothing between but whitespace, comments and line
/// continuations, if any. KDL does not allow that (a `/-` comments out one node, argument or block, which does not
/// start with `/-`), and the parser takes time quadratic in the number of such pairs on a line: `/- /- x `
/// repeated took 1.3 s at 4 KiB, and a long run of `/- ` overflowed its stack. Looked for everywhere, strings
/// included (conservative, as [`too_deep`] is): no plan writes `/- /-`, even inside a string.
fn slashdash_run(text: &str) -> Option<usize> {
    let mut after_slashdash = false;
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        let rest = &text[i..];
        if rest.starts_with("/-") {
            if after_slashdash {
                return Some(i);
            }
            after_slashdash = true;
            i += 2;
        } else if after_slashdash && rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if after_slashdash && rest.starts_with("/*") {
            i += block_comment_len(rest);
        } else {
            if !(c.is_whitespace() || c == '\\') {
                after_slashdash = false;
            }
            i += c.len_utf8();
        }
    }
    None
}

/// The length of the `/* ... */` comment `text` starts with (KDL's nest), or of `text` when it is not closed.
fn block_comment_len(text: &str) -> usize {
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with("/*") {
            depth += 1;
            i += 2;
        } else if text[i..].starts_with("*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    text.len()
}

fn parse_kdl(text: &str) -> Result<Vec<(usize, KdlDocument)>, kdl::KdlError> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if text.len() >= chunks::PARALLEL_THRESHOLD && threads > 1 {
        let starts = chunks::split_points(text, threads);
        if starts.len() > 1 {
            let ends = starts[1..].iter().copied().chain([text.len()]);
            let bounds: Vec<(usize, usize)> = starts.iter().copied().zip(ends).collect();
            let parsed: Vec<Option<KdlDocument>> = std::thread::scope(|scope| {
                let handles: Vec<_> =
                    bounds.iter().map(|&(a, b)| scope.spawn(move || KdlDocument::parse_v2(&text[a..b]).ok())).collect();
                handles.into_iter().map(|h| h.join().ok().flatten()).collect()
            });
            // Any piece in error: parse the whole file, so the error is found and placed as usual.
            if let Some(docs) = parsed.into_iter().collect::<Option<Vec<_>>>() {
                return Ok(starts.into_iter().zip(docs).collect());
            }
        }
    }
    KdlDocument::parse_v2(text).map(|doc| vec![(0, doc)])
}

struct Converter<'a> {
    file: FileId,
    /// The whole file.
    text: &'a str,
    /// Where the piece the kdl spans are relative to starts in `text`.
    base: usize,
}

impl Converter<'_> {
    /// A span without the whitespace kdl includes around nodes and entries.
    fn span(&self, s: miette::SourceSpan) -> Span {
        let start = (self.base + s.offset()).min(self.text.len());
        let end = (self.base + s.offset() + s.len()).min(self.text.len());
        let slice = &self.text[start..end];
        let lead = slice.len() - slice.trim_start().len();
        let trimmed = slice.trim();
        Span::new(self.file, start + lead, trimmed.len())
    }

    fn node(&self, node: &KdlNode) -> RawNode {
        let mut args = Vec::new();
        let mut props = Vec::new();
        for entry in node.entries() {
            match entry.name() {
                None => args.push(RawValue { value: scalar(entry.value()), span: self.span(entry.span()) }),
                Some(name) => props.push(self.prop(entry, name.value(), name.span())),
            }
        }
        let children = node.children().map_or_else(Vec::new, |c| c.nodes().iter().map(|n| self.node(n)).collect());
        let mut span = self.span(node.span());
        // A node's span may run past its terminator into trailing comments; stop at the end of the node proper.
        let src = &self.text[span.offset..span.offset + span.len];
        if let Some(end) = node_end(src, node.children().is_some()) {
            span.len = end;
        }
        RawNode {
            name: node.name().value().to_owned(),
            name_span: self.span(node.name().span()),
            args,
            props,
            children,
            has_block: node.children().is_some(),
            span,
        }
    }

    fn prop(&self, entry: &KdlEntry, name: &str, name_span: miette::SourceSpan) -> RawProp {
        let whole = self.span(entry.span());
        let name_span = self.span(name_span);
        // The value is what follows `=` in the entry.
        let after_name = name_span.offset + name_span.len;
        let rest = &self.text[after_name.min(whole.offset + whole.len)..whole.offset + whole.len];
        let value_span = match rest.find('=') {
            Some(eq) => {
                let v = &rest[eq + 1..];
                let lead = v.len() - v.trim_start().len();
                Span::new(self.file, after_name + eq + 1 + lead, v.trim().len())
            }
            None => whole,
        };
        RawProp { name: name.to_owned(), name_span, value: RawValue { value: scalar(entry.value()), span: value_span } }
    }
}

/// Where a node's own text ends: after its closing `}` when it has a block, else at the end of its first line.
fn node_end(src: &str, has_block: bool) -> Option<usize> {
    if has_block {
        return src.rfind('}').map(|i| i + 1);
    }
    let line_end = src.find('\n').unwrap_or(src.len());
    let line = src[..line_end].trim_end();
    let line = line.strip_suffix(';').unwrap_or(line).trim_end();
    // Drop a trailing `//` comment only when it is clearly outside a string (no quote after it).
    let cut = match line.rfind("//") {
        Some(i) if !line[i..].contains('"') => line[..i].trim_end().len(),
        _ => line.len(),
    };
    Some(cut)
}

fn scalar(v: &KdlValue) -> Scalar {
    match v {
        KdlValue::String(s) => Scalar::Str(s.clone()),
        KdlValue::Integer(i) => Scalar::Int(*i),
        KdlValue::Float(f) => Scalar::Float(*f),
        KdlValue::Bool(b) => Scalar::Bool(*b),
        KdlValue::Null => Scalar::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_run_of_slashdashes_is_refused_before_parsing() {
        // 64 KiB of `/- ` overflowed the parser's stack; 4 KiB took seconds (quadratic).
        let text = "/- ".repeat(64 * 1024 / 3);
        let (_, diags) = parse(FileId(0), &text);
        let d = diags.iter().next().unwrap();
        assert_eq!(d.code, Code::SlashdashRun);
        assert_eq!(d.span.unwrap().offset, 3);
    }

    #[test]
    fn a_slashdash_after_a_slashdash_is_refused_whatever_is_between() {
        // Each pair on a line made the parser scan the rest of it: `/- /- x ` repeated took 1.3 s at 4 KiB.
        for (text, second) in [
            ("/- /- x ", 3),
            ("a /-/-x\n", 4),
            ("/- /* c /* nested */ */ /- x", 24),
            ("/- // c\n/- x", 8),
            ("/-\n\t/-\n", 4),
            ("/- \\\n/- x", 5),
            ("/-\u{3000}/- x", 5),
        ] {
            let (_, diags) = parse(FileId(0), &text.repeat(2));
            let d = diags.iter().next().unwrap_or_else(|| panic!("{text:?} was accepted"));
            assert_eq!((d.code, d.span.unwrap().offset), (Code::SlashdashRun, second), "{text:?}");
        }
        // One `/-` before each node, argument or block is what KDL allows.
        let ok =
            "plan \"p\"\n/-step \"a\" kind=\"exec\" /-{ }\nstep \"b\" kind=\"exec\" { cmd \"x\" /-\"y\" /- \"z\" }\n";
        assert!(parse(FileId(0), ok).1.iter().all(|d| d.code != Code::SlashdashRun));
        let in_string = "plan \"p\"\nvar \"u\" \"http://h/-x/-y\"\n";
        assert!(parse(FileId(0), in_string).1.iter().all(|d| d.code != Code::SlashdashRun));
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        // Found by fuzzing (fuzz/corpus-work/plan_bytes): this overflowed the parser's stack.
        let deep = format!("{}{}", "n {".repeat(3000), "}".repeat(3000));
        let (doc, diags) = parse(FileId(0), &deep);
        assert!(doc.items.is_empty());
        let d = diags.iter().next().unwrap();
        assert_eq!(d.code, Code::TooDeep);
        assert_eq!(d.span.unwrap().offset, 2 + 3 * MAX_NESTING);
        let ok = format!("{}{}", "n {".repeat(MAX_NESTING), "}".repeat(MAX_NESTING));
        assert!(parse(FileId(0), &ok).1.iter().all(|d| d.code != Code::TooDeep));
    }

    /// `parse(text)` on another thread, or a failure if it has not finished in 30 s. Not a timing target (the
    /// `plan_read` benchmark measures the speed): an exponential parse never finishes, a linear one of 64 KiB
    /// takes about a second in a debug build on a busy machine.
    fn parse_or_hang(text: String) -> Diagnostics {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(parse(FileId(0), &text).1);
        });
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("parsing did not finish in 30 s: the KDL parser backtracks exponentially again (kdl-rs #177)")
    }

    #[test]
    fn unclosed_slashdashed_blocks_do_not_hang_the_parser() {
        // Issue 11, finding 6: 25 lines of `a /-{` took about ten minutes; each line doubled the time.
        let diags = parse_or_hang("a /-{\n".repeat(25));
        let d = diags.iter().next().unwrap();
        assert_eq!(d.code, Code::KdlSyntax);
        // The error points at the innermost unclosed block.
        assert_eq!(d.span.unwrap().offset, 24 * 6 + 4);
        // 64 KiB of it: refused by the nesting limit, before the parser sees it.
        let diags = parse_or_hang("a /-{\n".repeat(64 * 1024 / 6));
        assert_eq!(diags.iter().next().unwrap().code, Code::TooDeep);
    }

    #[test]
    fn slashdashed_blocks_as_deep_as_allowed_do_not_hang_the_parser() {
        // 64 KiB of blocks nested as deep as the limit allows, in turn each of the two shapes that backtracked
        // (each block alone took hours): a slashdashed child block, and a slashdashed node last in its block.
        let block = |open: &str| format!("{}{}", open.repeat(MAX_NESTING), "}\n".repeat(MAX_NESTING));
        let blocks = format!("{}{}", block("a /-{\n"), block("a\n/-b {\n"));
        let diags = parse_or_hang(blocks.repeat(64 * 1024 / blocks.len()));
        // KDL that parses: what is left to say is that `a` is not a plan node.
        let codes: Vec<Code> = diags.iter().map(|d| d.code).collect();
        assert!(!codes.is_empty() && codes.iter().all(|&c| c == Code::UnknownNode), "{codes:?}");
    }

    #[test]
    fn stray_closing_braces_are_reported_not_a_stack_overflow() {
        // Each `}` that closes nothing made the parser call itself once more: 20 KB of them overflowed the
        // stack of `zdd check`. The nesting limit does not count them.
        let diags = parse_or_hang("}".repeat(64 * 1024));
        let d = diags.iter().next().unwrap();
        assert_eq!(d.code, Code::KdlSyntax);
        assert_eq!(d.span.unwrap().offset, 0);
    }

    fn text_at(text: &str, span: Span) -> &str {
        &text[span.offset..span.offset + span.len]
    }

    #[test]
    fn keeps_spans_of_names_arguments_and_properties() {
        let text = "plan \"shop\"\nstep \"build\" kind=\"exec\" {\n    run \"make\" shell=#true\n}\n";
        let (doc, diags) = parse(FileId(0), text);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(doc.items.len(), 2);
        let RawItem::Step(step) = &doc.items[1] else { panic!("not a step") };
        assert_eq!(text_at(text, step.name_span), "step");
        assert_eq!(text_at(text, step.args[0].span), "\"build\"");
        let kind = step.prop("kind").unwrap();
        assert_eq!(text_at(text, kind.name_span), "kind");
        assert_eq!(text_at(text, kind.value.span), "\"exec\"");
        assert_eq!(kind.value.value, Scalar::Str("exec".into()));
        let run = &step.children[0];
        assert_eq!(text_at(text, run.span), "run \"make\" shell=#true");
        assert_eq!(run.prop("shell").unwrap().value.value, Scalar::Bool(true));
        assert!(text_at(text, step.span).ends_with('}'));
    }

    #[test]
    fn a_large_file_parsed_in_pieces_gives_the_same_document() {
        let mut text = String::from("plan \"big\"\n/* a comment\nstep \"not\" */\n");
        for i in 0..1000 {
            text.push_str(&format!(
                "step \"s{i}\" kind=\"fake\" {{\n    path \"/srv/{{{{app}}}}/{i}\" // note\n    get \"/\" status=200\n}}\n"
            ));
        }
        assert!(text.len() > chunks::PARALLEL_THRESHOLD);
        let (doc, diags) = parse(FileId(3), &text);
        assert!(diags.is_empty());
        let whole = KdlDocument::parse_v2(&text).unwrap();
        let conv = Converter { file: FileId(3), text: &text, base: 0 };
        let serial: Vec<RawNode> = whole.nodes().iter().map(|n| conv.node(n)).collect();
        let pieces: Vec<RawNode> = doc.items.iter().map(|i| i.node().clone()).collect();
        assert_eq!(pieces, serial);

        // An error in one piece is found and placed as by a single parse.
        let broken = text.replace("step \"s700\" kind=\"fake\"", "step \"s700\" kind=fake\"");
        let (doc, diags) = parse(FileId(3), &broken);
        assert!(doc.items.is_empty());
        let d = diags.iter().next().unwrap();
        assert_eq!(d.code, Code::KdlSyntax);
        let at = d.span.unwrap().offset;
        let line_start = broken[..at].rfind('\n').map_or(0, |i| i + 1);
        assert!(broken[line_start..].starts_with("step \"s700\""), "{}", &broken[line_start..line_start + 40]);
    }

    #[test]
    fn unknown_top_level_node_suggests() {
        let (_, diags) = parse(FileId(0), "stpe \"x\"\n");
        let d = diags.iter().next().unwrap();
        assert_eq!(d.code, Code::UnknownNode);
        assert!(d.help.as_deref().unwrap().contains("did you mean `step`"));
    }

    #[test]
    fn unknown_property_on_var_suggests() {
        let (_, diags) = parse(FileId(0), "var \"k\" secrte=#true\n");
        let d = diags.iter().next().unwrap();
        assert_eq!(d.code, Code::UnknownProperty);
        assert!(d.help.as_deref().unwrap().contains("did you mean `secret`"));
    }

    #[test]
    fn kdl_syntax_error_has_a_span() {
        let text = "plan \"shop\"\nstep \"a\" kind=exec\" {\n}\n";
        let (doc, diags) = parse(FileId(0), text);
        assert!(doc.items.is_empty());
        let d = diags.iter().next().unwrap();
        assert_eq!(d.code, Code::KdlSyntax);
        assert!(d.span.is_some());
    }
}
