//! The word sets of the fuzzy response lookup: tokenising as the original did,
//! Jaccard similarity, the length bounds a threshold implies, and the guard against
//! negation and number changes. Pure functions; the brute-force reference in the tests
//! and the indexed lookup both use them, so they agree by construction on what a
//! similarity is and differ only in which messages they look at.

use crate::store::{MAX_FUZZY_WORDS, NoMatch};

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

/// True when two messages differ in a number or a negation: the numbers and
/// negations of each, in the order they appear, are not the same sequence. Such a
/// pair is never a fuzzy match: "is the server running" and "is the server not
/// running" share 4 of 5 words but mean the opposite; "transfer 5 dollars to account
/// 7" and "transfer 7 dollars to account 5" have the same words. A number is a word
/// with a digit, compared without the punctuation around it and without thousands
/// separators ("1,000" and "1000" are one number); a negation is `not`, `no`,
/// `never` or a word ending in `n't` (or `n’t`), all alike.
pub fn differ_in_meaning(a: &str, b: &str) -> bool {
    meaning_marks(a).ne(meaning_marks(b))
}

/// The numbers (normalised) and negations (as `not`) of `message`, in order, split
/// into words as [`word_set`] does.
fn meaning_marks(message: &str) -> impl Iterator<Item = String> + '_ {
    message
        .split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
        .filter_map(|word| {
            let w = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '’');
            if w.chars().any(char::is_numeric) {
                let w = w.trim_matches(|c: char| !c.is_alphanumeric());
                return Some(without_thousands_separators(&w.to_lowercase()));
            }
            let w = w.to_lowercase();
            let negation = matches!(w.as_str(), "not" | "no" | "never")
                || w.ends_with("n't")
                || w.ends_with("n’t");
            negation.then(|| "not".to_string())
        })
}

/// `1,000,000` as `1000000`; anything else as it is.
fn without_thousands_separators(number: &str) -> String {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let groups: Vec<&str> = int.split(',').collect();
    let grouped = groups.len() > 1
        && (1..=3).contains(&groups[0].len())
        && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_digit()))
        && groups[1..].iter().all(|g| g.len() == 3)
        && frac.chars().all(|c| c.is_ascii_digit());
    if grouped {
        number.replace(',', "")
    } else {
        number.to_string()
    }
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

/// The fewest shared words a message of `c` words needs to be strictly more similar
/// than `t` to a query of `q` words; `None` when no count reaches it. Similarity
/// grows with the shared count, so this is a binary search: O(log q), where a scan
/// from 1 made the lookup quadratic in a long message's length.
pub(crate) fn words_needed(q: usize, c: usize, t: f64) -> Option<usize> {
    let most = q.min(c);
    if most == 0 || jaccard(q, c, most) <= t {
        return None;
    }
    let (mut lo, mut hi) = (1, most);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if jaccard(q, c, mid) > t {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

/// A fuzzy query: its words and the bounds any match lies within (both engines'
/// lookups start from it).
pub(crate) struct FuzzyQuery {
    pub words: Vec<String>,
    pub threshold: f64,
    /// Word counts a match can have.
    pub lo: i64,
    pub hi: i64,
    /// The fewest words any match shares with the query.
    pub fewest: usize,
}

impl FuzzyQuery {
    /// The query of `message`, or why there is none (`Err(None)`: nothing can match).
    pub(crate) fn new(
        message: &str,
        threshold: f64,
    ) -> std::result::Result<FuzzyQuery, Option<NoMatch>> {
        let words = word_set(message);
        if words.is_empty() {
            return Err(None);
        }
        if words.len() > MAX_FUZZY_WORDS {
            return Err(Some(NoMatch::TooManyWords {
                words: words.len(),
                limit: MAX_FUZZY_WORDS,
            }));
        }
        let q = words.len();
        let (lo, hi) = length_bounds(q, threshold);
        // Need grows with the message's length, so the shortest feasible length needs
        // the fewest shared words.
        let fewest = (lo.max(1) as usize..=q.max(lo as usize) * 2 + 1)
            .find_map(|count| words_needed(q, count, threshold))
            .ok_or(None)?;
        Ok(FuzzyQuery {
            words,
            threshold,
            lo,
            hi,
            fewest,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether a message of `count` words sharing `n` words (with `left` query words
    /// still to count) can still match.
    pub(crate) fn can_reach(&self, count: usize, n: usize, left: usize) -> bool {
        words_needed(self.len(), count, self.threshold).is_some_and(|need| n + left >= need)
    }
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
        assert!(differ_in_meaning(
            "is the server running",
            "is the server not running"
        ));
        assert!(differ_in_meaning("open port 8080", "open port 8081"));
        assert!(differ_in_meaning("it works", "it doesn't works"));
        assert!(differ_in_meaning("it works", "it works, never"));
        assert!(!differ_in_meaning(
            "is the server up",
            "is the server running"
        ));
        assert_eq!(jaccard(0, 0, 0), 0.0);
    }

    #[test]
    fn the_guard_sees_order_repeats_and_separators() {
        // A swap leaves the word set as it was; the order of the numbers differs.
        let (a, b) = (
            "transfer 5 dollars to account 7",
            "transfer 7 dollars to account 5",
        );
        assert_eq!(set(a), set(b));
        assert!(differ_in_meaning(a, b));
        assert!(differ_in_meaning("add 5 5 7", "add 5 7 7"));
        assert!(differ_in_meaning("add 5 7", "add 5 5 7"));
        // One number written two ways is one number; two different ones are not.
        assert!(!differ_in_meaning("pay 1,000 now", "pay 1000 now"));
        assert!(!differ_in_meaning("pay $1,000.50.", "pay 1000.50"));
        assert!(differ_in_meaning("pay 1,000 now", "pay 1,001 now"));
        assert!(differ_in_meaning("pay 1,00 now", "pay 100 now"));
        // Negations count and keep their place among the numbers.
        assert!(!differ_in_meaning("it isn't 5", "it is not 5"));
        assert!(differ_in_meaning("not 5 but 7", "5 but not 7"));
        assert!(differ_in_meaning("no, not that", "not that"));
        assert!(!differ_in_meaning("Is The Server Up", "is the server up?"));
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
