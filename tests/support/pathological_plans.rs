//! Plans shaped to make the KDL parser slow (issue 11, finding 6: 108 bytes of `a /-{` took 4.7 s): a short unit
//! repeated to a size, each family a way the parser once backtracked or rescanned. Shared by the `plan_read`
//! benchmark (which times `zdd check` on each at 1, 4, 16 and 64 KiB), the test that each 64 KiB plan gets its
//! diagnostic (`tests/fast/plan_diagnostics.rs`) and the fuzz seeds made from them (`fuzz/seeds/plan_bytes/slow_*`).

use zdd_engine::diag::Code;

/// One family: `open` repeated, then as many `close` (nested ones in blocks as deep as the nesting limit allows,
/// so that they reach the parser), or then `tail` once; and the diagnostic `zdd check` gives for it.
pub(crate) struct Family {
    /// A file-name-safe name, for the seeds.
    pub(crate) name: &'static str,
    pub(crate) open: &'static str,
    pub(crate) close: &'static str,
    /// Written once after the repeated `open`s (with no `close`): what each of them searches forward to.
    pub(crate) tail: &'static str,
    /// The code of the diagnostic that says what is wrong at 64 KiB (`zdd::missing-plan` comes with most).
    #[allow(dead_code, reason = "read by the diagnostics test; the seeds and the benchmark include this file too")]
    pub(crate) code: Code,
}

const fn family(name: &'static str, open: &'static str, close: &'static str, code: Code) -> Family {
    Family { name, open, close, tail: "", code }
}

const fn family_then(name: &'static str, open: &'static str, tail: &'static str, code: Code) -> Family {
    Family { name, open, close: "", tail, code }
}

const SYNTAX: Code = Code::KdlSyntax;
/// KDL that parses, of nodes that are not plan nodes.
const UNKNOWN: Code = Code::UnknownNode;

pub(crate) const FAMILIES: &[Family] = &[
    // Slashdashed child blocks and nodes, and nesting (kdl-rs #177; each level doubled the time).
    family("slashdash_block_unclosed", "a /-{\n", "", Code::TooDeep),
    family("slashdash_block_closed", "a /-{\n", "}\n", UNKNOWN),
    family("slashdash_last_node", "a\n/-b {\n", "}\n", UNKNOWN),
    family("block_closed", "a {\n", "}\n", UNKNOWN),
    family("typed_slashdash_block", "(t)a /-(t){\n", "}\n", SYNTAX),
    family("slashdash_block_flat", "a /-{ }\n", "", UNKNOWN),
    family("open_braces", "{", "", Code::TooDeep),
    family("close_braces", "}", "", SYNTAX),
    // Runs of slashdashes (quadratic, and a long run overflowed the stack).
    family("slashdash_run", "/- ", "", Code::SlashdashRun),
    family("slashdash_pairs", "/- /- x ", "", Code::SlashdashRun),
    family("slashdash_pairs_commented", "/- /* c */ /- x ", "", Code::SlashdashRun),
    family("slashdash_entries", "a /-x /-y\n", "", UNKNOWN),
    // Unterminated strings: each opening scanned to the end of its line, or of the file (quadratic).
    family("raw_unclosed_one_line", "a #\"", "", SYNTAX),
    family("raw2_unclosed_one_line", "a ##\"", "", SYNTAX),
    family("raw_unclosed_lines", "a #\"\n", "", SYNTAX),
    family("raw_multiline_unclosed", "a #\"\"\"\n", "", SYNTAX),
    family("raw_multiline_unclosed_one_line", "a #\"\"\" ", "", SYNTAX),
    family("raw_v1_unclosed", "a r#\"", "", SYNTAX),
    // A multi-line raw string's closing line, searched for from every opening before it (a fuzzer's 15 KiB input
    // took 12 s): closing quotes in the middle of a line, after text, on a line indented more than the body, and
    // with `#` counts that alternate.
    family_then("raw_multiline_closing_mid_line", "a #\"\"\"\n", "a #\"\"\"#\"\"\"\n", SYNTAX),
    family_then("raw_multiline_closing_after_text", "a #\"\"\"\n", "x\"\"\"#\n", SYNTAX),
    family_then("raw_multiline_closing_indented", "a #\"\"\"\n", "  \"\"\"#\n", SYNTAX),
    family_then("raw_multiline_alternating_hashes", "a #\"\"\"\nb ##\"\"\"\n", "c \"\"\"#\nd \"\"\"##\n", SYNTAX),
    family("quote_unclosed_one_line", "a \"", "", SYNTAX),
    family("quote_unclosed_lines", "a \"\n", "", SYNTAX),
    family("multiline_unclosed", "a \"\"\"\n", "", SYNTAX),
    family("escape_unclosed", "a \"\\", "", SYNTAX),
    // Comments, type annotations, properties, line continuations.
    family("comment_unclosed_nested", "/*", "", SYNTAX),
    family("comment_unclosed_lines", "a /*\n", "", SYNTAX),
    family("type_unclosed", "a (", "", SYNTAX),
    family("types_repeated", "(t)", "", SYNTAX),
    family("types_on_values", "a (t)1 ", "", UNKNOWN),
    family("property_without_value", "a x=", "", SYNTAX),
    family("equals_signs", "=", "", SYNTAX),
    family("line_continuations", "\\ ", "", SYNTAX),
    family("semicolons", ";", "", SYNTAX),
    family("close_parens", ")", "", SYNTAX),
];

/// `family` at about `bytes` bytes.
pub(crate) fn generate(family: &Family, bytes: usize, max_nesting: usize) -> String {
    if family.close.is_empty() {
        let opens = (bytes.saturating_sub(family.tail.len()) / family.open.len()).max(1);
        return family.open.repeat(opens) + family.tail;
    }
    let block = format!("{}{}", family.open.repeat(max_nesting), family.close.repeat(max_nesting));
    block.repeat((bytes / block.len()).max(1))
}
