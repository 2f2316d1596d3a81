//! "Did you mean" suggestions for misspelled keys and names.

/// Returns `"; did you mean `X`?"` for the candidate closest to `word`, or
/// an empty string when none is close enough to be a likely typo.
///
/// Close means a Damerau-Levenshtein distance of at most a third of the
/// word's length (at least 1), or that one is the other with a different
/// case or separator (`hashkey` → `hash_key`).
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match closest(word, candidates) {
        Some(best) => format!("; did you mean `{best}`?"),
        None => String::new(),
    }
}

/// The candidate closest to `word`, if any is close enough.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let word_squashed = squash(word);
    let limit = (word.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        if candidate == word {
            continue;
        }
        let distance = if squash(candidate) == word_squashed {
            0
        } else {
            strsim::damerau_levenshtein(word, candidate)
        };
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_misspellings() {
        let keys = ["path", "host", "methods", "upstreams", "hash_key"];
        assert_eq!(closest("pth", keys), Some("path"));
        assert_eq!(closest("upstream", keys), Some("upstreams"));
        assert_eq!(closest("hashkey", keys), Some("hash_key"));
        assert_eq!(closest("Methods", keys), Some("methods"));
        assert_eq!(closest("hsot", keys), Some("host"));
    }

    #[test]
    fn stays_quiet_when_nothing_is_close() {
        let keys = ["path", "host"];
        assert_eq!(closest("weight", keys), None);
        assert_eq!(did_you_mean("zzz", keys), "");
        assert_eq!(did_you_mean("pat", keys), "; did you mean `path`?");
    }
}
