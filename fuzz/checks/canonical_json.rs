//! The canonical JSON and cache key fuzz check: canonical text parses back to an equal
//! value, is its own canonical form, does not depend on key order, and the key from
//! a value equals the key from its canonical text.

use agentstore::{CacheKey, canonical_json};
use serde_json::Value;

/// Runs one input. Panics when an invariant breaks.
pub fn check(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(text) = canonical_json(&value) else {
        return;
    };
    let back: Value = serde_json::from_str(&text).expect("canonical text parses");
    assert_eq!(back, value, "canonical text is not the same value");
    assert_eq!(
        canonical_json(&back).expect("again"),
        text,
        "not idempotent"
    );
    let reversed = reverse_keys(&value);
    assert_eq!(
        canonical_json(&reversed).expect("reversed"),
        text,
        "key order leaks"
    );
    let key = CacheKey::new("scope", "tool", &value).expect("key");
    assert_eq!(key, CacheKey::from_canonical("scope", "tool", &text));
    assert_ne!(key, CacheKey::from_canonical("scope", "tool2", &text));
    assert_ne!(key, CacheKey::from_canonical("scopet", "ool", &text));
}

/// The same value with every object's keys in reverse order.
fn reverse_keys(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .rev()
                .map(|(k, v)| (k.clone(), reverse_keys(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(reverse_keys).collect()),
        other => other.clone(),
    }
}
