//! "Did you mean": the closest known name to a misspelled one (strsim), for every name-lookup diagnostic.

/// The candidate closest to `name`, if it is close enough to be a plausible typo: a few edits away
/// (transpositions count as one) or sharing most of its letters in order (Jaro-Winkler).
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let max_edits = (name.chars().count() / 3).max(1);
    let mut best: Option<((usize, u64), &str)> = None;
    for candidate in candidates {
        let edits = strsim::osa_distance(name, candidate);
        let similarity = strsim::jaro_winkler(name, candidate);
        if edits > max_edits && similarity < 0.85 {
            continue;
        }
        // Fewer edits first, then higher similarity (scaled to an integer to order it; it is in 0..=1).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let key = (edits, u64::MAX - (similarity * 1e9) as u64);
        if best.is_none_or(|(b, _)| key < b) {
            best = Some((key, candidate));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("stpe", ["plan", "step", "slots"]), Some("step"));
        assert_eq!(did_you_mean("timeotu", ["timeout", "retry"]), Some("timeout"));
        assert_eq!(did_you_mean("kye", ["key", "a"]), Some("key"));
        assert_eq!(did_you_mean("zzz", ["timeout", "retry"]), None);
        assert_eq!(did_you_mean("x", ["plan", "step"]), None);
    }
}
