//! The deterministic data of the benchmark workloads (`WORKLOADS.md`, section 1),
//! shared with the integration tests by `#[path]`:
//! SplitMix64, the 5,000-word vocabulary and the generators built on it. Another
//! language can rebuild the same bytes, so results join across implementations.

#[path = "../../src/rng.rs"]
mod rng;
pub use rng::SplitMix64;

/// The vocabulary (seed 1): 5,000 distinct lowercase words of 3 to 10 letters, in the
/// order generated.
pub fn vocab() -> Vec<String> {
    let mut r = SplitMix64::new(1);
    let mut words = Vec::with_capacity(5000);
    let mut seen = std::collections::HashSet::with_capacity(5000);
    while words.len() < 5000 {
        let len = 3 + r.below(8);
        let w: String = (0..len)
            .map(|_| char::from(b'a' + r.below(26) as u8))
            .collect();
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

/// A content string of about 200 characters: vocabulary words until at least 200
/// characters (spaces included) are reached.
pub fn content(r: &mut SplitMix64, vocab: &[String]) -> String {
    let mut out = String::with_capacity(216);
    while out.len() < 200 {
        let w = &vocab[r.below(vocab.len() as u64) as usize];
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// The first `n` memory pairs `(content, importance)` of `seed` (101 for W1, 201 for
/// the preloaded entries of W2 to W4).
pub fn memory_pairs(seed: u64, n: usize, vocab: &[String]) -> Vec<(String, f64)> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let c = content(&mut r, vocab);
            let imp = r.unit();
            (c, imp)
        })
        .collect()
}

/// The first `n` tool params of `seed` (501 for W5): item i is
/// `{"query": content(r), "top_k": 1 + below(20), "lang": "en"}`, drawn in that order.
pub fn tool_params(seed: u64, n: usize, vocab: &[String]) -> Vec<serde_json::Value> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let query = content(&mut r, vocab);
            let top_k = 1 + r.below(20);
            serde_json::json!({ "query": query, "top_k": top_k, "lang": "en" })
        })
        .collect()
}

/// The first `n` prompt/response pairs of `seed` (701, or 705 for new pairs):
/// `(content(r), content(r))`.
pub fn prompt_pairs(seed: u64, n: usize, vocab: &[String]) -> Vec<(String, String)> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let prompt = content(&mut r, vocab);
            (prompt, content(&mut r, vocab))
        })
        .collect()
}

/// The first `n` fuzzy messages of `seed` (801): `L = 8 + below(13)` words, each
/// `VOCAB[below(5000)]`, joined by spaces.
pub fn fuzzy_messages(seed: u64, n: usize, vocab: &[String]) -> Vec<String> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let len = 8 + r.below(13);
            (0..len)
                .map(|_| vocab[r.below(vocab.len() as u64) as usize].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The first `n` response times of `seed` (901), in seconds: `0.05 + 3.95 u²`.
pub fn response_times(seed: u64, n: usize) -> Vec<f64> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let u = r.unit();
            0.05 + 3.95 * u * u
        })
        .collect()
}

/// 2025-01-01T00:00:00Z in microseconds: the timestamp of preloaded entry 0.
pub const PRELOAD_EPOCH_MICROS: i64 = 1_735_689_600_000_000;

#[cfg(test)]
#[allow(dead_code, unused_imports)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn sha256_hex(s: &str) -> String {
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn splitmix_matches_the_test_vectors() {
        let mut r = SplitMix64::new(0);
        assert_eq!(
            [r.next_u64(), r.next_u64(), r.next_u64()],
            [0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f]
        );
        let mut r = SplitMix64::new(1);
        assert_eq!(
            [r.next_u64(), r.next_u64(), r.next_u64()],
            [
                10451216379200822465,
                13757245211066428519,
                17911839290282890590
            ]
        );
    }

    #[test]
    fn vocab_matches_the_published_checks() {
        let v = vocab();
        assert_eq!(
            v[0..8].join(" "),
            "todf rly heyyilpbs oib hbvfhqo jwvgx qceh whwkmh"
        );
        assert_eq!(v[4997..5000].join(" "), "jifv moe oxscdq");
        assert_eq!(
            sha256_hex(&v.join("\n")),
            "e7a9ee5af6b9140c0364f8804b0dd9fc84a3f9087d89316842cf12e464a4d9f6"
        );
    }

    #[test]
    fn the_other_streams_have_their_documented_shapes() {
        let v = vocab();
        let params = tool_params(501, 3, &v);
        assert_eq!(params[0]["lang"], "en");
        assert!((1..=20).contains(&params[0]["top_k"].as_u64().unwrap()));
        assert!(params[0]["query"].as_str().unwrap().len() >= 200);
        let msgs = fuzzy_messages(801, 200, &v);
        assert!(
            msgs.iter()
                .all(|m| (8..=20).contains(&m.split(' ').count()))
        );
        let times = response_times(901, 1000);
        assert!(times.iter().all(|t| (0.05..4.0).contains(t)));
        let under = times.iter().filter(|t| **t < 2.0).count();
        assert!(
            (650..750).contains(&under),
            "about 70% under 2 s, got {under}"
        );
        let pairs = prompt_pairs(701, 2, &v);
        assert_ne!(pairs[0].0, pairs[0].1);
    }

    #[test]
    fn memory_pairs_match_the_published_checks() {
        let v = vocab();
        let pairs = memory_pairs(101, 100_000, &v);
        assert!(pairs[0].0.starts_with("kci ockr aegkzm quqw dnsyzl pjv"));
        assert_eq!(pairs[0].0.len(), 201);
        assert_eq!(pairs[0].1, 0.920045227884284);
        let joined: Vec<&str> = pairs.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            sha256_hex(&joined.join("\n")),
            "70a040bbcbb64c23969abb2df98f6d8056f51bbbbfadb43d190f16e3c80d3f2c"
        );
    }
}
