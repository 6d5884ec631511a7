//! The demo's tools: a calculator and a word counter (cacheable), a slow lookup
//! (cacheable, 300 ms), and the clock (never cached).

use std::time::Duration;

use agentstore::agent::{Tool, ToolError};
use serde_json::{Value, json};

/// `a op b` with + - * / ^ (cacheable).
pub struct Calculator;

#[async_trait::async_trait]
impl Tool for Calculator {
    fn name(&self) -> &str {
        "calculator"
    }
    async fn execute(&self, params: Value) -> Result<Value, ToolError> {
        let expr = params["expression"]
            .as_str()
            .ok_or_else(|| ToolError::InvalidParams("expression must be a string".into()))?;
        let parts: Vec<&str> = expr.split_whitespace().collect();
        let [a, op, b] = parts.as_slice() else {
            return Err(ToolError::InvalidParams(format!(
                "expression must look like '12 * 7', got {expr:?}"
            )));
        };
        let num = |s: &str| {
            s.parse::<f64>()
                .map_err(|_| ToolError::InvalidParams(format!("{s:?} is not a number")))
        };
        let (a, b) = (num(a)?, num(b)?);
        let value = match *op {
            "+" => a + b,
            "-" => a - b,
            "*" => a * b,
            "/" if b == 0.0 => return Err(ToolError::Failed("division by zero".into())),
            "/" => a / b,
            "^" => a.powf(b),
            other => {
                return Err(ToolError::InvalidParams(format!(
                    "unknown operator {other:?}; use + - * / ^"
                )));
            }
        };
        Ok(json!({ "expression": expr, "value": value }))
    }
}

/// Words and characters of a text (cacheable).
pub struct WordCounter;

#[async_trait::async_trait]
impl Tool for WordCounter {
    fn name(&self) -> &str {
        "word_counter"
    }
    async fn execute(&self, params: Value) -> Result<Value, ToolError> {
        let text = params["text"]
            .as_str()
            .ok_or_else(|| ToolError::InvalidParams("text must be a string".into()))?;
        Ok(json!({ "words": text.split_whitespace().count(), "chars": text.chars().count() }))
    }
}

/// A slow lookup (300 ms, like a web request), cacheable for an hour.
pub struct SlowLookup;

#[async_trait::async_trait]
impl Tool for SlowLookup {
    fn name(&self) -> &str {
        "lookup"
    }
    async fn execute(&self, params: Value) -> Result<Value, ToolError> {
        let topic = params["topic"]
            .as_str()
            .ok_or_else(|| ToolError::InvalidParams("topic must be a string".into()))?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let fact = match topic {
            "sqlite" => "SQLite is an embedded SQL database engine in a single file.",
            "tokio" => "Tokio is an asynchronous runtime for Rust.",
            "blake3" => "BLAKE3 is a fast cryptographic hash function.",
            _ => "No entry for this topic.",
        };
        Ok(json!({ "topic": topic, "fact": fact }))
    }
}

/// The current time: never cached (its name is in the never-cache set, and it says
/// so itself).
pub struct Clock;

#[async_trait::async_trait]
impl Tool for Clock {
    fn name(&self) -> &str {
        "current_time"
    }
    fn cacheable(&self) -> bool {
        false
    }
    async fn execute(&self, _params: Value) -> Result<Value, ToolError> {
        Ok(json!({ "utc": chrono::Utc::now().to_rfc3339() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_calculator_calculates_and_refuses_nonsense() {
        let v = Calculator
            .execute(json!({"expression": "2 ^ 10"}))
            .await
            .unwrap();
        assert_eq!(v["value"], 1024.0);
        assert!(
            Calculator
                .execute(json!({"expression": "1 / 0"}))
                .await
                .is_err()
        );
        assert!(
            Calculator
                .execute(json!({"expression": "two plus"}))
                .await
                .is_err()
        );
    }
}
