//! Differential and timing harness: kdl 6.7.1 from crates.io (`kdl_ref`) against the vendored, patched copy
//! (`kdl_new`).
//!
//!   kdl-diff diff PATH...         compare the full parse result of every file under PATH
//!   kdl-diff mutate PATH...       the same on 40 deterministic mutants of each file
//!   kdl-diff time ref|new FAMILY BYTES   parse one generated input, print ms and diagnostics count
//!   kdl-diff families             list the families
//!   kdl-diff stack ref|new OPEN CLOSE DEPTH KIB   parse DEPTH x OPEN then DEPTH x CLOSE on a KIB stack

macro_rules! render {
    ($krate:ident, $text:expr) => {{
        match $krate::KdlDocument::parse_v2($text) {
            Ok(doc) => (true, vec![format!("{doc:?}")]),
            Err(e) => (
                false,
                e.diagnostics
                    .iter()
                    .map(|d| {
                        format!("{:?} | {:?} | {:?} | {:?} | {:?}", d.span, d.message, d.label, d.help, d.severity)
                    })
                    .collect(),
            ),
        }
    }};
}

/// This thread's CPU time in ms: the machine is shared, wall time would measure the neighbours.
fn cpu_ms() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1e6
}

fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(4 << 30).spawn(f).unwrap().join().unwrap()
}

/// (name, opening unit, closing unit): the input is `open` n times then `close` n times, n as large as fits.
const FAMILIES: &[(&str, &str, &str)] = &[
    ("a-slashdash-open", "a /-{\n", ""),
    ("a-slashdash-open-closed", "a /-{\n", "}\n"),
    ("a-slashdash-open-inline-closed", "a /-{ ", "} "),
    ("a-open", "a {\n", ""),
    ("a-open-closed", "a {\n", "}\n"),
    ("slashdash-open", "/-{\n", ""),
    ("slashdash-open-closed", "/-{\n", "}\n"),
    ("open", "{", ""),
    ("slashdash-node-open", "/-a {\n", ""),
    ("a-slashdash-children-flat", "a /-{ }\n", ""),
    ("a-slashdash-entry-flat", "a /-x ", ""),
    ("a-slashdash-entry-then-open", "a /-x {\n", ""),
    ("a-x-slashdash-open", "a x /-{\n", ""),
    ("a-slashdash-x-slashdash-open", "a /-x /-{\n", ""),
    ("a-slashdash-open-slashdash-open", "a /-{ /-{\n", ""),
    ("slashdash-repeated", "/-", ""),
    ("a-then-slashdash-repeated", "/- ", ""),
    ("type-open", "(", ""),
    ("a-type-open", "a (", ""),
    ("typed-node-open", "(t)a {\n", ""),
    ("typed-node-open-closed", "(t)a {\n", "}\n"),
    ("a-typed-slashdash-open", "(t)a /-(t){\n", ""),
    ("comment-open", "/*", ""),
    ("comment-open-closed", "/*", "*/"),
    ("escline", "a \\\n", ""),
    ("quote", "a \"", ""),
    ("raw-open", "a #\"", ""),
    ("close", "}", ""),
    ("mixed-open", "a /-{ b {\n", ""),
    ("slashdash-newline-repeated", "/-\n", ""),
    ("a-slashdash-space-repeated", "a /- ", ""),
    ("slashdash-x-repeated", "/- x ", ""),
    ("raw2-open", "a ##\"", ""),
    ("raw-multiline-open", "a #\"\"\"\n", ""),
    ("multiline-open", "a \"\"\"\n", ""),
    ("node-then-slashdash-node-open", "a\n/-b {\n", ""),
    ("node-then-slashdash-node-open-closed", "a\n/-b {\n", "}\n"),
    ("semicolon-slashdash-node-open", "a; /-b {", ""),
    ("slashdash-type-node-open", "/-(t)b {\n", ""),
    ("child-then-slashdash-open", "a {\nb\n/-", ""),
    // Unterminated strings, on one line and one per line.
    ("raw-open-lines", "a #\"\n", ""),
    ("raw2-open-lines", "a ##\"\n", ""),
    ("quote-lines", "a \"\n", ""),
    ("raw-v1-open", "a r#\"", ""),
    ("raw-v1-open-lines", "a r#\"\n", ""),
    ("multiline-open-one-line", "a \"\"\" ", ""),
    ("raw-multiline-open-one-line", "a #\"\"\" ", ""),
    ("raw-multiline-open-lines", "#\"\"\"\n", ""),
    ("quote-escape-open", "a \"\\", ""),
    ("quote-unicode-escape-open", "a \"\\u{", ""),
    ("raw-close-only", "a \"# ", ""),
    ("raw-value-hash-lines", "a #\"x\"\n", ""),
    ("quote-prop-open", "a x=\"", ""),
    ("raw-prop-open", "a x=#\"", ""),
    ("quote-node-name-open", "\"", ""),
    ("raw-node-name-open", "#\"", ""),
    ("hash-repeated", "#", ""),
    ("a-hash-repeated", "a #", ""),
    // Comments.
    ("a-comment-open", "a /*", ""),
    ("a-comment-open-lines", "a /*\n", ""),
    ("comment-open-star", "/*/", ""),
    ("line-comment-lines", "// a /-{ \"\n", ""),
    // Type annotations.
    ("types-repeated", "(t)", ""),
    ("a-types-repeated", "a (t)", ""),
    ("a-types-value", "a (t)1 ", ""),
    ("type-open-lines", "a (\n", ""),
    ("type-close-lines", "a (t\n", ""),
    ("typed-slashdash-repeated", "/-(t)", ""),
    // Properties, numbers, escaped lines.
    ("prop-eq-repeated", "a x=", ""),
    ("eq-repeated", "=", ""),
    ("a-eq-repeated", "a =", ""),
    ("number-junk", "a 0x", ""),
    ("sign-repeated", "a -", ""),
    ("escline-space", "\\ ", ""),
    ("semicolons", ";", ""),
    ("close-paren", ")", ""),
    ("slashdash-close", "/-}", ""),
    ("slashdash-sixteen-then-x", "/- /- /- /- /- /- /- /- /- /- /- /- /- /- /- /- x ", ""),
    ("a-slashdash-sixteen-open", "a /- /- /- /- /- /- /- /- /- /- /- /- /- /- /- /-{\n", ""),
];

fn family(name: &str, bytes: usize) -> String {
    if let Some(unit) = name.strip_prefix("unit:") {
        let unit = unit.replace("\\n", "\n");
        return unit.repeat((bytes / unit.len()).max(1));
    }
    let &(_, open, close) = FAMILIES.iter().find(|f| f.0 == name).unwrap_or_else(|| panic!("no family {name}"));
    let n = (bytes / (open.len() + close.len())).max(1);
    let mut s = open.repeat(n);
    s.push_str(&close.repeat(n));
    s
}

const MUTANTS: u64 = 40;

const TOKENS: &[&str] = &[
    "/-", "/-", "/-{", "{", "{", "}", "}", ";", "\n", "(", ")", "(t)", "\"", "/*", "*/", "//", "=", "#", " ", "\\",
    "/- ", "x", "{ }", "#\"", "\"#", "\"\"\"",
];

/// A deterministic edit of `text`: inserted tokens, deleted ranges, a truncation.
fn mutant(text: &str, k: u64) -> String {
    let mut state = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (text.len() as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut b: Vec<u8> = text.as_bytes().to_vec();
    let edits = 1 + next() % 6;
    for _ in 0..edits {
        let pos = if b.is_empty() { 0 } else { (next() % (b.len() as u64 + 1)) as usize };
        match next() % 8 {
            0..=4 => {
                let t = TOKENS[(next() % TOKENS.len() as u64) as usize].as_bytes();
                b.splice(pos..pos, t.iter().copied());
            }
            5 | 6 => {
                let end = (pos + (next() % 16) as usize).min(b.len());
                b.drain(pos..end);
            }
            _ => b.truncate(pos),
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn files(path: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path).unwrap().flatten().map(|e| e.path()).collect();
        entries.sort();
        for e in entries {
            files(&e, out);
        }
    } else if path.is_file() {
        out.push(path.to_path_buf());
    }
}

/// The diagnostic zdd reports (engine/src/plan/raw.rs `kdl_error`): the first with a message, else the first.
fn zdd_pick(xs: &[String]) -> Option<&String> {
    xs.iter().find(|x| x.split(" | ").nth(1) != Some("None")).or(xs.first())
}

/// `xs` without repeats of an earlier element.
fn dedup(xs: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    xs.iter().filter(|x| seen.insert(x.as_str())).cloned().collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("families") => {
            for f in FAMILIES {
                println!("{}\t{:?}\t{:?}", f.0, f.1, f.2);
            }
        }
        Some("stack") => {
            // stack ref|new OPEN CLOSE DEPTH KIB: parse DEPTH levels of OPEN then CLOSE on a KIB stack
            let which = args[1].clone();
            let unescape = |x: &str| x.replace("\\n", "\n");
            let depth: usize = args[4].parse().unwrap();
            let text = format!("{}{}", unescape(&args[2]).repeat(depth), unescape(&args[3]).repeat(depth));
            let kib: usize = args[5].parse().unwrap();
            let ok = std::thread::Builder::new()
                .stack_size(kib << 10)
                .spawn(move || if which == "ref" { render!(kdl_ref, &text).0 } else { render!(kdl_new, &text).0 })
                .unwrap()
                .join()
                .unwrap();
            println!("ok={ok}");
        }
        Some("time") => {
            let which = args[1].clone();
            let text = family(&args[2], args[3].parse().unwrap());
            let len = text.len();
            let (ms, ok, diags) = on_big_stack(move || {
                let t = cpu_ms();
                let (ok, out) = if which == "ref" { render!(kdl_ref, &text) } else { render!(kdl_new, &text) };
                (cpu_ms() - t, ok, if ok { 0 } else { out.len() })
            });
            println!("{len}\t{ms:.2}\t{}\t{diags}", if ok { "ok" } else { "err" });
        }
        Some(mode @ ("diff" | "mutate")) => {
            let mut paths = Vec::new();
            for a in &args[1..] {
                files(std::path::Path::new(a), &mut paths);
            }
            let mut inputs: Vec<(String, String)> = Vec::new();
            for p in &paths {
                let Ok(text) = std::fs::read_to_string(p) else { continue };
                if mode == "diff" {
                    inputs.push((p.display().to_string(), text));
                } else {
                    for k in 0..MUTANTS {
                        inputs.push((format!("{} #{k}", p.display()), mutant(&text, k)));
                    }
                }
            }
            let total = inputs.len();
            let (mut same, mut invalid, mut dup_only, mut differ, mut pick_differs) = (0, 0, 0, 0, 0);
            for (p, text) in inputs {
                let t2 = text.clone();
                let (r_ok, r) = on_big_stack(move || render!(kdl_ref, &t2));
                let t2 = text.clone();
                let (n_ok, n) = on_big_stack(move || render!(kdl_new, &t2));
                if !r_ok {
                    invalid += 1;
                }
                if (r_ok, &r) == (n_ok, &n) {
                    same += 1;
                } else if r_ok == n_ok && !r_ok && dedup(&r) == dedup(&n) {
                    dup_only += 1;
                    if zdd_pick(&r) != zdd_pick(&n) {
                        pick_differs += 1;
                        println!("PICK-DIFFERS {p}");
                    }
                    println!("DUP-ONLY {p} ({} diagnostics before, {} after)", r.len(), n.len());
                } else {
                    differ += 1;
                    if differ <= 5 {
                        println!("DIFFER {p}\n  text {text:?}\n  ref {r_ok} {r:?}\n  new {n_ok} {n:?}");
                    }
                }
            }
            println!(
                "{} inputs ({invalid} invalid): {same} identical, {dup_only} differ only in repeated diagnostics ({pick_differs} of them in the diagnostic zdd reports), {differ} differ",
                total
            );
            if differ > 0 {
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!("usage: kdldiff diff PATH... | time ref|new FAMILY BYTES | families");
            std::process::exit(2);
        }
    }
}
