//! The JSON reporter: one object per event, one per line, on stdout (`--json`).

use std::io::Write;

use super::Reporter;
use crate::events::Stamped;

pub struct JsonReporter {
    out: Box<dyn Write + Send>,
}

impl JsonReporter {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { out }
    }
}

impl Reporter for JsonReporter {
    fn event(&mut self, stamped: &Stamped) {
        if let Ok(line) = serde_json::to_string(stamped) {
            // A closed stdout (`zdd run --json | head`) must not stop the deploy.
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::{SharedBuf, failed_run};

    #[test]
    fn one_object_per_line() {
        let buf = SharedBuf::default();
        let mut r = JsonReporter::new(Box::new(buf.clone()));
        for e in failed_run() {
            r.event(&e);
        }
        let text = buf.text();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["event"].is_string() && v["at"].is_u64(), "{line}");
        }
        insta::with_settings!({ filters => vec![(r#""at":\d+"#, r#""at":"[time]""#)] }, {
            insta::assert_snapshot!(text);
        });
    }
}
