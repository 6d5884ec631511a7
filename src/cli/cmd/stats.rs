//! `agentstore stats`: the three stats views, for one agent or all.

use agentstore::{QueryResult, StatsView};
use serde_json::{Map, Value};

use crate::cli::Context;
use crate::cli::output::{self, Output, Reply};
use crate::cli::table;

/// `stats`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  agentstore stats
  agentstore --json stats --agent bot
  agentstore sql 'SELECT agent, cache_hit_rate_pct FROM tool_stats'")]
pub struct Args {
    /// Only this agent; all agents by default.
    #[arg(long)]
    pub agent: Option<String>,
}

const VIEWS: [StatsView; 3] = [StatsView::Memory, StatsView::Tools, StatsView::Responses];

/// Runs `stats`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Reply> {
    let store = ctx.open_existing()?;
    if let Some(name) = &args.agent {
        store.existing_agent(name)?;
    }
    let mut json = Map::new();
    let mut text = String::new();
    for view in VIEWS {
        let result = store.view(view, args.agent.as_deref())?;
        text.push_str(&format!(
            "{}\n{}\n",
            view.name(),
            render(&result, ctx.width)
        ));
        json.insert(
            view.name().to_string(),
            output::objects(&result.columns, &result.rows),
        );
    }
    Ok(Output::Text {
        text: text.trim_end().to_string(),
        json: Value::Object(json),
    }
    .into())
}

/// One table per view, columns down and agents across (the views are wide).
fn render(result: &QueryResult, width: Option<usize>) -> String {
    if result.rows.is_empty() {
        return "(no rows)".to_string();
    }
    let mut header = vec![String::new()];
    header.extend((1..=result.rows.len()).map(|i| format!("#{i}")));
    let lines: Vec<Vec<String>> = result
        .columns
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let mut line = vec![name.clone()];
            line.extend(result.rows.iter().map(|row| cell(&row[c])));
            line
        })
        .collect();
    table::render(Some(&header), &lines, width)
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            format!("{f:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        }
        other => other.to_string(),
    }
}
