//! Splitting a large plan file at top-level node boundaries so its KDL can be parsed on several cores.
//!
//! The `kdl` crate parses about 2 MB/s; a plan of a thousand steps takes most of `zdd check`'s time in the
//! parser. Top-level nodes are independent, so the text is cut at lines where a new top-level node starts (outside
//! strings, comments and blocks, not after a line continuation or a `/-`) and the pieces are parsed in parallel.
//! Any piece that fails to parse makes the caller parse the whole file instead, so errors are reported exactly
//! as for a single parse. Text the scan can already tell is broken (a one-line string running over a line end,
//! a string or comment left open, a stray `}`) is not cut at all: its pieces would fail and be parsed twice.

/// Files smaller than this are parsed in one go: threads would cost more than they save.
pub const PARALLEL_THRESHOLD: usize = 64 * 1024;

/// Byte offsets where the text may be cut into `pieces` roughly equal parts (`0` first). Fewer offsets come
/// back when there are not enough safe places, and only `0` when the text is certainly not valid KDL.
pub fn split_points(text: &str, pieces: usize) -> Vec<usize> {
    let Scan { starts: candidates, broken } = scan(text);
    let mut points = vec![0];
    if broken {
        return points;
    }
    for k in 1..pieces {
        let ideal = text.len() * k / pieces;
        let next = candidates.iter().copied().find(|&c| c >= ideal);
        if let Some(c) = next
            && c > *points.last().unwrap_or(&0)
        {
            points.push(c);
        }
    }
    points
}

/// What one pass over the text found.
struct Scan {
    /// Offsets of lines that start a top-level node.
    starts: Vec<usize>,
    /// The text cannot parse: a one-line string holds a line end, a string or block comment is never closed,
    /// or a `}` closes nothing. (Only a hint for choosing how to parse: the parser still decides.)
    broken: bool,
}

/// Offsets of lines that start a top-level node.
#[cfg(test)]
fn node_starts(text: &str) -> Vec<usize> {
    scan(text).starts
}

fn scan(text: &str) -> Scan {
    let b = text.as_bytes();
    let mut starts = Vec::new();
    let mut broken = false;
    let mut depth = 0usize;
    // The last two significant bytes at the top level, to recognise a line continuation `\` and a `/-`.
    let mut last = [b'\n', b'\n'];
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = skip_block_comment(b, i);
                broken |= !b[..end].ends_with(b"*/");
                i = end;
                continue;
            }
            b'"' => {
                let end = skip_string(b, i, 0);
                broken |= string_is_broken(&b[i..end], 0);
                i = end;
                last = [last[1], b'"'];
                continue;
            }
            b'#' => {
                let hashes = b[i..].iter().take_while(|&&h| h == b'#').count();
                if b.get(i + hashes) == Some(&b'"') {
                    let end = skip_string(b, i + hashes, hashes);
                    broken |= string_is_broken(&b[i + hashes..end], hashes);
                    i = end;
                    last = [last[1], b'"'];
                    continue;
                }
            }
            b'{' => depth += 1,
            b'}' => {
                broken |= depth == 0;
                depth = depth.saturating_sub(1);
            }
            b'\n' => {
                let continued = last[1] == b'\\' || (last[0] == b'/' && last[1] == b'-');
                if depth == 0 && !continued && b.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
                    starts.push(i + 1);
                }
            }
            _ => {}
        }
        if !c.is_ascii_whitespace() {
            last = [last[1], c];
        }
        i += 1;
    }
    Scan { starts, broken }
}

/// A string as `skip_string` delimited it (from its opening quote) cannot be valid: it was never closed, or it
/// is a one-line string (`"…"`, `#"…"#`) holding a line end that no `\` escapes.
fn string_is_broken(s: &[u8], hashes: usize) -> bool {
    let multi = s.starts_with(b"\"\"\"");
    let quote: &[u8] = if multi { b"\"\"\"" } else { b"\"" };
    let closed = s.len() >= 2 * quote.len() + hashes
        && s[..s.len() - hashes].ends_with(quote)
        && s[s.len() - hashes..].iter().all(|&h| h == b'#');
    if !closed {
        return true;
    }
    if multi {
        return false;
    }
    let mut j = quote.len();
    while j < s.len() {
        match s[j] {
            // An escaped character, or a whitespace escape: `\` and all the whitespace after it (line ends too).
            b'\\' if hashes == 0 => {
                j += 1;
                let gap = s[j..].iter().take_while(|c| c.is_ascii_whitespace()).count();
                j += gap.max(1);
            }
            b'\n' | b'\r' => return true,
            _ => j += 1,
        }
    }
    false
}

/// Past the end of a (possibly nested) `/* */` comment starting at `i`.
fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    let mut nesting = 0usize;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            nesting += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            nesting -= 1;
            i += 2;
            if nesting == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// Past the end of a string whose opening quote is at `i`, raw with `hashes` `#` if `hashes > 0`.
fn skip_string(b: &[u8], i: usize, hashes: usize) -> usize {
    let multi = b[i..].starts_with(b"\"\"\"");
    let quote: &[u8] = if multi { b"\"\"\"" } else { b"\"" };
    let mut j = i + quote.len();
    while j < b.len() {
        if hashes == 0 && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j..].starts_with(quote)
            && b[j + quote.len()..].iter().take(hashes).filter(|&&h| h == b'#').count() == hashes
        {
            return j + quote.len() + hashes;
        }
        j += 1;
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_only_where_a_top_level_node_starts() {
        let text = concat!(
            "plan \"p\"\n",
            "step \"a\" kind=\"x\" {\n    run \"}\\\"\nnot-a-node\"\n}\n",
            "/* step \"in comment\"\nstill */\n",
            "var \"v\" \\\n  \"continued\"\n",
            "/-\nstep \"commented out\"\n",
            "step \"b\" kind=\"x\" { raw #\"\nquote \" inside\n\"#; }\n",
            "step \"c\" kind=\"x\"\n",
        );
        let starts: Vec<&str> = node_starts(text).iter().map(|&s| text[s..].lines().next().unwrap_or("")).collect();
        assert_eq!(
            starts,
            ["step \"a\" kind=\"x\" {", "var \"v\" \\", "step \"b\" kind=\"x\" { raw #\"", "step \"c\" kind=\"x\""]
        );
    }

    #[test]
    fn text_that_cannot_parse_is_not_cut() {
        let step = |body: &str| format!("step \"s\" kind=\"x\" {{\n    run {body}\n}}\n");
        for broken in ["\"unclosed\nline", "#\"raw\nline\"#", "\"never closed", "\"ok\" }", "\"ok\" /* open"] {
            let text = step("\"a\"").repeat(50) + &step(broken) + &step("\"b\"").repeat(50);
            assert!(kdl::KdlDocument::parse_v2(&text).is_err(), "{broken:?} should not parse");
            assert_eq!(split_points(&text, 4), [0], "{broken:?}");
        }
        for fine in [
            "\"a\\\"b\"",
            "\"escaped \\   \n   line end\"",
            "\"\"\"\n    multi\n    \"\"\"",
            "#\"\"\"\n    raw\n    \"\"\"#",
        ] {
            let text = step("\"a\"").repeat(50) + &step(fine) + &step("\"b\"").repeat(50);
            assert!(kdl::KdlDocument::parse_v2(&text).is_ok(), "{fine:?} should parse");
            assert_eq!(split_points(&text, 4).len(), 4, "{fine:?}");
        }
    }

    #[test]
    fn split_points_are_increasing_node_starts() {
        let text = (0..100)
            .map(|i| format!("step \"s{i}\" kind=\"x\" {{\n    run \"{i}\"\n}}\n"))
            .collect::<Vec<_>>()
            .concat();
        let points = split_points(&text, 4);
        assert_eq!(points.len(), 4);
        assert!(points.windows(2).all(|w| w[0] < w[1]));
        assert!(points[1..].iter().all(|&p| text[p..].starts_with("step ")));
    }

    /// Top-level nodes written in every awkward way KDL allows around line ends.
    const SNIPPETS: &[&str] = &[
        "step \"a\" kind=\"x\" {\n    run \"}\"\n}\n",
        "var \"v\" \\\n    \"continued\"\n",
        "/-\nstep \"gone\" kind=\"x\"\n",
        "/- step \"gone\"\n",
        "/* block\nstep \"in comment\" /* nested\n */ still\n*/\n",
        "// line comment with \" and {\n",
        "step \"raw\" kind=\"x\" { s #\"a \"quote\" { \"#; }\n",
        "step \"multi\" kind=\"x\" {\n    s \"\"\"\n    step \"no\"\n    \"\"\"\n}\n",
        "step \"rawmulti\" kind=\"x\" {\n    s #\"\"\"\n    } \"\"\"\n    \"\"\"#\n}\n",
        "plan \"p\"; slots \"a\" \"b\"\n",
        "step \"esc\" kind=\"x\" { s \"a\\\"}\"; }\n",
        "defaults {\n    retry attempts=2\n}\n",
        "\n\n",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Parsing the pieces between any of the cut points gives the same nodes as parsing the whole text.
        #[test]
        fn cutting_at_node_starts_never_changes_the_document(picks in proptest::collection::vec(0..SNIPPETS.len(), 1..40)) {
            let text: String = picks.iter().map(|&i| SNIPPETS[i]).collect();
            let whole = kdl::KdlDocument::parse_v2(&text).expect("the snippets are valid KDL");
            let names = |doc: &kdl::KdlDocument| {
                doc.nodes()
                    .iter()
                    .map(|n| {
                        let mut n = n.clone();
                        n.clear_format_recursive();
                        n.to_string()
                    })
                    .collect::<Vec<_>>()
            };
            proptest::prop_assert!(!scan(&text).broken, "valid text taken for broken: {text:?}");
            let mut cuts = node_starts(&text);
            cuts.insert(0, 0);
            cuts.push(text.len());
            let mut pieces = Vec::new();
            for w in cuts.windows(2) {
                let doc = kdl::KdlDocument::parse_v2(&text[w[0]..w[1]]);
                proptest::prop_assert!(doc.is_ok(), "piece {:?} does not parse", &text[w[0]..w[1]]);
                pieces.extend(names(&doc.unwrap_or_default()));
            }
            proptest::prop_assert_eq!(pieces, names(&whole));
        }
    }
}
