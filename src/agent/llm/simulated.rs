//! The simulated client: offline and deterministic. Its reply is derived from the
//! prompt and says plainly that it is simulated; its latency is drawn from a seeded
//! distribution so that a demo shows fast and slow generations and some that miss the
//! target time.

use std::time::Duration;

use super::{ChatMessage, LlmClient, LlmError, Role, excerpt};
use crate::rng::SplitMix64;

/// How long the simulated model takes: uniform in `fast` for most calls, uniform in
/// `slow` for a `slow_share` of them. Which calls are slow is fixed by the seed and the
/// prompt, so a rerun with the same seed is slow on the same prompts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// The usual range.
    pub fast: (Duration, Duration),
    /// The range of the slow calls.
    pub slow: (Duration, Duration),
    /// The share of slow calls, 0 to 1.
    pub slow_share: f64,
}

impl Latency {
    /// No waiting at all (tests).
    pub const NONE: Latency = Latency {
        fast: (Duration::ZERO, Duration::ZERO),
        slow: (Duration::ZERO, Duration::ZERO),
        slow_share: 0.0,
    };

    /// The demo's: 20-400 ms, and one call in eight takes 2.2-3.5 s, past the default
    /// 2 s target, so it is answered with a fallback while it finishes in the background.
    pub const DEMO: Latency = Latency {
        fast: (Duration::from_millis(20), Duration::from_millis(400)),
        slow: (Duration::from_millis(2200), Duration::from_millis(3500)),
        slow_share: 0.125,
    };

    /// The latency of a call whose random stream is `rng`.
    fn draw(&self, rng: &mut SplitMix64) -> Duration {
        let (lo, hi) = if rng.unit() < self.slow_share {
            self.slow
        } else {
            self.fast
        };
        let span = hi.saturating_sub(lo).as_secs_f64();
        lo + Duration::from_secs_f64(span * rng.unit())
    }
}

impl Default for Latency {
    fn default() -> Self {
        Latency::DEMO
    }
}

/// Closing sentences of simulated replies, picked by the prompt's hash.
const ENDINGS: [&str; 6] = [
    "Here is a short, considered answer.",
    "In short: it depends on the details, and here they are.",
    "The key points follow, most important first.",
    "That comes up often; the usual answer applies.",
    "Let me walk through it step by step.",
    "Briefly, yes, with one caveat worth knowing.",
];

/// An offline chat model for demos and tests: deterministic for a seed.
#[derive(Debug, Clone)]
pub struct SimulatedClient {
    seed: u64,
    latency: Latency,
}

impl SimulatedClient {
    /// A client whose latencies come from `latency`, seeded with `seed`.
    pub fn new(seed: u64, latency: Latency) -> Self {
        SimulatedClient { seed, latency }
    }

    /// A client that answers at once (tests).
    pub fn instant(seed: u64) -> Self {
        Self::new(seed, Latency::NONE)
    }

    /// The random stream of one prompt: the seed mixed with blake3 of the messages.
    fn rng(&self, messages: &[ChatMessage]) -> SplitMix64 {
        let mut h = blake3::Hasher::new();
        for m in messages {
            h.update(&[m.role as u8]);
            h.update(&(m.content.len() as u64).to_le_bytes());
            h.update(m.content.as_bytes());
        }
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_bytes()[..8]);
        SplitMix64::new(self.seed ^ u64::from_le_bytes(first))
    }

    /// The reply to `messages`, without the wait.
    pub fn reply(&self, messages: &[ChatMessage]) -> String {
        let mut rng = self.rng(messages);
        let _latency = self.latency.draw(&mut rng);
        let question = messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .unwrap_or("");
        let context_lines = messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.lines().count())
            .sum::<usize>();
        let ending = ENDINGS[rng.below(ENDINGS.len() as u64) as usize];
        format!(
            "[simulated] About \"{}\": {ending} (prompt: {context_lines} context lines)",
            excerpt(question, 60)
        )
    }
}

#[async_trait::async_trait]
impl LlmClient for SimulatedClient {
    fn describe(&self) -> String {
        format!("simulated (seed {}, offline)", self.seed)
    }

    async fn chat(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        let wait = self.latency.draw(&mut self.rng(messages));
        tokio::time::sleep(wait).await;
        Ok(self.reply(messages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(q: &str) -> Vec<ChatMessage> {
        vec![
            ChatMessage::system("ctx one\nctx two"),
            ChatMessage::user(q),
        ]
    }

    #[test]
    fn replies_are_deterministic_labelled_and_follow_the_prompt() {
        let a = SimulatedClient::instant(7);
        let b = SimulatedClient::instant(7);
        let r = a.reply(&prompt("what is rust?"));
        assert_eq!(r, b.reply(&prompt("what is rust?")));
        assert!(r.starts_with("[simulated] About \"what is rust?\""), "{r}");
        assert!(r.ends_with("(prompt: 2 context lines)"), "{r}");
        assert_ne!(r, a.reply(&prompt("what is sqlite?")));
    }

    #[test]
    fn latencies_follow_the_distribution() {
        let client = SimulatedClient::new(1, Latency::DEMO);
        let mut slow = 0;
        for i in 0..2000 {
            let d = Latency::DEMO.draw(&mut client.rng(&prompt(&format!("q{i}"))));
            let fast = Latency::DEMO.fast.0 <= d && d <= Latency::DEMO.fast.1;
            let is_slow = Latency::DEMO.slow.0 <= d && d <= Latency::DEMO.slow.1;
            assert!(fast || is_slow, "{d:?}");
            slow += usize::from(is_slow);
        }
        // 12.5% of 2000 = 250; a seeded draw stays well inside this band.
        assert!((180..320).contains(&slow), "{slow} slow calls");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waits_its_latency() {
        let client = SimulatedClient::new(
            3,
            Latency {
                fast: (Duration::from_secs(5), Duration::from_secs(5)),
                slow: (Duration::ZERO, Duration::ZERO),
                slow_share: 0.0,
            },
        );
        let start = tokio::time::Instant::now();
        let r = client.chat(&prompt("hello")).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert!(r.starts_with("[simulated]"));
    }
}
