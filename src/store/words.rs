//! The word sets of the fuzzy response lookup: tokenising as the original did,
//! Jaccard similarity, the length bounds a threshold implies, and the guard against
//! negation and number changes. Pure functions; the brute-force reference in the tests
//! and the indexed lookup both use them, so they agree by construction on what a
//! similarity is and differ only in which messages they look at.

/// The distinct words of `message`: lower-cased and split on whitespace, as Python's
/// `message.lower().split()` (which also splits on the ASCII separators U+001C to
/// U+001F, unlike Rust's `split_whitespace`). Sorted, without duplicates.
pub fn word_set(message: &str) -> Vec<String> {
    let lower = message.to_lowercase();
    let mut words: Vec<String> = lower
        .split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    words.sort_unstable();
    words.dedup();
    words
}

/// `|A ∩ B| / |A ∪ B|` from the set sizes and the size of their intersection; 0 when
/// both are empty (the original skipped such pairs).
pub fn jaccard(a: usize, b: usize, shared: usize) -> f64 {
    let union = a + b - shared;
    if union == 0 {
        0.0
    } else {
        shared as f64 / union as f64
    }
}

/// The word counts a cached message can have and still be strictly more similar than
/// `threshold` to a query of `query_words` words: similarity is at most
/// `min/max` of the two counts. The bounds are inclusive and err on the wide side.
pub fn length_bounds(query_words: usize, threshold: f64) -> (i64, i64) {
    let q = query_words as f64;
    let lo = (threshold * q).floor() as i64;
    let hi = if threshold > 0.0 {
        (q / threshold).ceil().min(i64::MAX as f64) as i64
    } else {
        i64::MAX
    };
    (lo.max(1), hi)
}

/// True when the two word sets differ by a negation or a number: a word that is in
/// one set and not the other is `not`, `no`, `never`, ends in `n't` (or `n’t`), or
/// contains a digit (after trimming punctuation around it). Such a pair is never a
/// fuzzy match: "is the server running" and "is the server not running" share 5 of
/// 6 words but mean the opposite.
pub fn differ_in_meaning(a: &[String], b: &[String]) -> bool {
    symmetric_difference(a, b).any(is_negation_or_number)
}

fn is_negation_or_number(word: &str) -> bool {
    if word.chars().any(char::is_numeric) {
        return true;
    }
    let w = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '’');
    matches!(w, "not" | "no" | "never") || w.ends_with("n't") || w.ends_with("n’t")
}

/// The words in exactly one of two sorted, deduplicated lists.
fn symmetric_difference<'a>(a: &'a [String], b: &'a [String]) -> impl Iterator<Item = &'a str> {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        loop {
            match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x == y => {
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x < y => {
                    i += 1;
                    return Some(x.as_str());
                }
                (_, Some(y)) => {
                    j += 1;
                    return Some(y.as_str());
                }
                (Some(x), None) => {
                    i += 1;
                    return Some(x.as_str());
                }
                (None, None) => return None,
            }
        }
    })
}

/// The number of words two sorted, deduplicated lists share.
pub fn shared_words(a: &[String], b: &[String]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> Vec<String> {
        word_set(s)
    }

    #[test]
    fn words_are_lower_cased_distinct_and_split_like_python() {
        assert_eq!(set("The cat  the\tCAT\u{1f}dog"), ["cat", "dog", "the"]);
        assert_eq!(set("  \n "), Vec::<String>::new());
        assert_eq!(set("ÉCOLE école"), ["école"]);
    }

    #[test]
    fn jaccard_of_the_classic_false_hit() {
        let a = set("is the server running");
        let b = set("is the server not running");
        let shared = shared_words(&a, &b);
        assert_eq!(shared, 4);
        assert!((jaccard(a.len(), b.len(), shared) - 0.8).abs() < 1e-12);
        assert!(differ_in_meaning(&a, &b));
        assert!(differ_in_meaning(
            &set("open port 8080"),
            &set("open port 8081")
        ));
        assert!(differ_in_meaning(
            &set("it works"),
            &set("it doesn't works")
        ));
        assert!(differ_in_meaning(&set("it works"), &set("it works, never")));
        assert!(!differ_in_meaning(
            &set("is the server up"),
            &set("is the server running")
        ));
        assert_eq!(jaccard(0, 0, 0), 0.0);
    }

    #[test]
    fn length_bounds_hold_every_possible_match() {
        for q in 1..60 {
            for t in [0.0, 0.3, 0.5, 0.7, 0.9, 0.99] {
                let (lo, hi) = length_bounds(q, t);
                for c in 1..200usize {
                    let best = jaccard(q, c, q.min(c));
                    if best > t {
                        assert!(
                            lo <= c as i64 && c as i64 <= hi,
                            "q={q} t={t} c={c} outside {lo}..={hi}"
                        );
                    }
                }
            }
        }
    }
}
