//! The fuzz targets' time budget (issue 11: a 108-byte plan took 4.7 s to read): reading a plan may take at
//! most 100 ms of CPU per KiB of it, and 10 ms whatever its size. An input over it is a crash.
//!
//! Timed by the wall clock first, which costs nothing; an input over the budget by that clock is run again and
//! timed by the CPU time of this thread (`/proc/thread-self/schedstat`), so a busy machine, not the input, does
//! not fail the run.

use std::time::{Duration, Instant};

/// 100 ms per KiB.
const PER_BYTE: Duration = Duration::from_nanos(100_000_000 / 1024);
/// The budget of an input of a few bytes: the time a lazily built table or a page fault may take.
const FLOOR: Duration = Duration::from_millis(10);

/// Run `read` on `text` (a plan), panicking if it took more than the budget for `text`'s size.
pub fn within_budget(text: &str, read: impl Fn(&str)) {
    let budget = FLOOR.max(PER_BYTE * u32::try_from(text.len()).unwrap_or(u32::MAX));
    let start = Instant::now();
    read(text);
    if start.elapsed() <= budget {
        return;
    }
    let (spent, clock) = match thread_cpu_time() {
        Some(before) => {
            read(text);
            (thread_cpu_time().unwrap_or(before) - before, "CPU")
        }
        None => (start.elapsed(), "wall-clock"),
    };
    assert!(
        spent <= budget,
        "reading a plan of {} bytes took {spent:?} of {clock} time, over its budget of {budget:?} (100 ms per KiB)",
        text.len()
    );
}

/// The time this thread has run on a CPU, if the kernel says.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}
