//! The one renderer: commands return [`Output`] data and this prints it as a table or
//! text, or as one JSON document with `--json`. stdout carries only data.

use std::io::{self, Write};

use serde_json::Value;

use crate::cli::table;

/// What a command returns: its output, and whether it found problems (exit code 3).
#[derive(Debug)]
pub struct Reply {
    /// What to print.
    pub output: Output,
    /// True when a check ran and found problems.
    pub problems: bool,
}

impl From<Output> for Reply {
    fn from(output: Output) -> Self {
        Reply {
            output,
            problems: false,
        }
    }
}

/// Data to print. Each variant carries the JSON document and its human form.
#[derive(Debug)]
pub enum Output {
    /// Rows under a header; JSON is usually an array of objects.
    Rows {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
        json: Value,
    },
    /// Name/value pairs; JSON is an object.
    Fields {
        fields: Vec<(String, String)>,
        json: Value,
    },
    /// Plain text (a line or several).
    Text { text: String, json: Value },
    /// Nothing more: the command already wrote its data (an export to stdout, a
    /// chat's replies).
    Done,
}

impl Output {
    /// Prints to stdout; tables fit `width` columns (none: as wide as their cells).
    pub fn print(&self, json: bool, width: Option<usize>) -> io::Result<()> {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        if let Output::Done = self {
            return Ok(());
        }
        if json {
            let doc = match self {
                Output::Rows { json, .. }
                | Output::Fields { json, .. }
                | Output::Text { json, .. } => json,
                Output::Done => unreachable!("returned above"),
            };
            serde_json::to_writer_pretty(&mut out, doc)?;
            writeln!(out)?;
        } else {
            match self {
                Output::Rows { header, rows, .. } => {
                    let mut t = table::TableWriter::new(&mut out, Some(header), width);
                    for r in rows {
                        t.row(r)?;
                    }
                    t.finish()?;
                }
                Output::Fields { fields, .. } => {
                    let mut t = table::TableWriter::new(&mut out, None, width);
                    for (k, v) in fields {
                        t.row(&[k, v])?;
                    }
                    t.finish()?;
                }
                Output::Text { text, .. } => {
                    if !text.is_empty() {
                        writeln!(out, "{text}")?;
                    }
                }
                Output::Done => {}
            }
        }
        out.flush()
    }
}

/// A JSON array written as its items arrive, one compact item per line, so a long
/// result never sits in memory. Dropped before [`JsonArray::finish`] (a failure part
/// way), the array is left unclosed: no parser takes it for the whole result.
pub struct JsonArray<W: Write> {
    out: W,
    items: u64,
}

impl<W: Write> JsonArray<W> {
    /// Starts the array.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(b"[")?;
        Ok(JsonArray { out, items: 0 })
    }

    /// Writes one item.
    pub fn item(&mut self, value: &impl serde::Serialize) -> io::Result<()> {
        self.out
            .write_all(if self.items == 0 { b"\n  " } else { b",\n  " })?;
        self.items += 1;
        serde_json::to_writer(&mut self.out, value)?;
        Ok(())
    }

    /// Closes the array and flushes.
    pub fn finish(mut self) -> io::Result<W> {
        let end: &[u8] = if self.items == 0 { b"]\n" } else { b"\n]\n" };
        self.out.write_all(end)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// True when the error is a write to a closed pipe (`agentstore sql ... | head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// A table reply: `header`, one row per item, and the JSON printed instead with
/// `--json`.
pub fn rows(header: &[&str], rows: Vec<Vec<String>>, json: Value) -> Reply {
    Output::Rows {
        header: header.iter().map(|h| h.to_string()).collect(),
        rows,
        json,
    }
    .into()
}

/// Query rows as a JSON array of objects keyed by column.
pub fn objects(columns: &[String], rows: &[Vec<Value>]) -> Value {
    Value::Array(
        rows.iter()
            .map(|row| {
                let obj: serde_json::Map<String, Value> =
                    columns.iter().cloned().zip(row.iter().cloned()).collect();
                Value::Object(obj)
            })
            .collect(),
    )
}

/// A report struct as name/value pairs (`memory_entries` reads `memory entries`),
/// and as itself in JSON.
pub fn report(report: &impl serde::Serialize) -> serde_json::Result<Reply> {
    let json = serde_json::to_value(report)?;
    let fields = match &json {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.replace('_', " "), v.to_string()))
            .collect(),
        other => vec![(String::new(), other.to_string())],
    };
    Ok(Output::Fields { fields, json }.into())
}

/// Bytes in binary units: `812 B`, `12.4 KiB`, `3.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A duration in its largest unit: `3d`, `5h`, `12m`, `40s`, `814ms`.
pub fn duration_micros(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    let text = match m {
        m if m >= 86_400_000_000 => format!("{}d", m / 86_400_000_000),
        m if m >= 3_600_000_000 => format!("{}h", m / 3_600_000_000),
        m if m >= 60_000_000 => format!("{}m", m / 60_000_000),
        m if m >= 1_000_000 => format!("{}s", m / 1_000_000),
        m if m >= 1_000 => format!("{}ms", m / 1_000),
        m => format!("{m}µs"),
    };
    format!("{sign}{text}")
}

/// A time (microseconds since the epoch) as `2026-01-31 12:00:00`, in UTC.
pub fn utc(micros: i64) -> String {
    agentstore::clock::to_datetime(micros)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A measured time given in seconds, with three significant digits in a readable
/// unit: `2.41s`, `12.3ms`, `4.72µs`.
pub fn seconds(s: f64) -> String {
    // A measured time is never negative: -0.0 (or a rounding error below zero, or
    // NaN) reads as 0, not "-0.00µs".
    let s = if s > 0.0 { s } else { 0.0 };
    let (v, unit) = match s {
        s if s >= 1.0 => (s, "s"),
        s if s >= 1e-3 => (s * 1e3, "ms"),
        s => (s * 1e6, "µs"),
    };
    let digits = match v {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    format!("{v:.digits$}{unit}")
}

/// Cuts text to `max` characters on one line, with an ellipsis when cut.
pub fn snippet(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// The agent's stats as a few readable lines.
pub fn stats_text(stats: &agentstore::agent::AgentStats) -> String {
    let m = &stats.memory;
    let t = &stats.tools;
    let responses = match &stats.responses {
        agentstore::ResponseTimeStats::Data(r) => format!(
            "responses: {} answered, p50 {}, p95 {}, {:.1}% under the {} target, {} cached",
            r.total_responses,
            seconds(r.p50_response_time),
            seconds(r.p95_response_time),
            r.target_achievement_rate,
            seconds(r.target_response_time),
            r.cache_entries,
        ),
        agentstore::ResponseTimeStats::NoData => "responses: none answered yet".to_string(),
    };
    format!(
        "memory: {} entries, {:.3} MB\ntools: {} calls, {} hits ({:.1}%), {} cached\n{responses}",
        m.total_entries,
        m.total_memory_mb,
        t.total_tool_calls,
        t.total_cache_hits,
        t.cache_hit_rate_pct,
        t.cache_size,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(12_697), "12.4 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn durations_use_the_largest_unit() {
        assert_eq!(duration_micros(3 * 86_400_000_000 + 5), "3d");
        assert_eq!(duration_micros(814_000), "814ms");
        assert_eq!(duration_micros(-90_000_000), "-1m");
    }

    #[test]
    fn measured_seconds_read_in_their_unit() {
        assert_eq!(seconds(2.413), "2.41s");
        assert_eq!(seconds(0.0123), "12.3ms");
        assert_eq!(seconds(0.41234), "412ms");
        assert_eq!(seconds(0.000_004_72), "4.72µs");
        assert_eq!(seconds(-0.0), "0.00µs");
        assert_eq!(seconds(-1e-12), "0.00µs");
    }

    #[test]
    fn snippets_cut_on_characters() {
        assert_eq!(snippet("héllo wörld", 5), "héllo…");
        assert_eq!(snippet("a\nb", 10), "a b");
    }
}
