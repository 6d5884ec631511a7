//! The page of `agentstore report`: one self-contained HTML document, inline CSS (light
//! and dark, print) and inline SVG charts, no script, no request to any host. Every
//! chart has a title, axis labels with units, an SVG `<title>`/`<desc>` text
//! alternative, and a `<title>` on each mark so its numbers show on hover.

use std::fmt::Write as _;

use agentstore::ResponseTimeStats;
use agentstore::report::{
    AGE_BINS, AgentReport, IMPORTANCE_BINS, MAX_TOOLS, Report, TIME_BINS, TOP_ENTRIES,
};

use crate::cli::output::{bytes, seconds, utc};

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root { color-scheme: light dark; --fg: #1d2330; --muted: #5b6474; --bg: #ffffff; --card: #f5f7fa;
  --grid: #d5dae2; --bar: #3b6fd8; --warn: #d2453b; --ok: #2f9e62; --c1: #3b6fd8; --c2: #7a5bd8;
  --c3: #2f9e62; --c4: #e09a27; --c5: #d2453b; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e4e8ef; --muted: #9aa3b2; --bg: #12151b; --card: #1b2029; --grid: #333b48;
    --bar: #6e9bff; --warn: #ff6b60; --ok: #4cc38a; --c1: #6e9bff; --c2: #a48bff; --c3: #4cc38a;
    --c4: #ffb84d; --c5: #ff6b60; } }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  background: var(--bg); margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px;
  border-bottom: 1px solid var(--grid); padding-bottom: 4px; }
.meta, .note, figcaption { color: var(--muted); font-size: 12px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 16px; }
figure { background: var(--card); border-radius: 8px; margin: 0; padding: 12px; }
figure h3 { font-size: 14px; margin: 0 0 6px; }
svg { width: 100%; height: auto; display: block; }
svg text { fill: var(--fg); font-size: 11px; } svg .axis { stroke: var(--muted); stroke-width: 1; }
svg .gridline { stroke: var(--grid); stroke-width: 1; } svg .bar { fill: var(--bar); }
svg .doomed { fill: var(--warn); } svg .kept { fill: var(--bar); fill-opacity: .75; }
svg .marker { stroke-width: 2; } svg .p50 { stroke: var(--c3); } svg .p90 { stroke: var(--c4); }
svg .p95 { stroke: var(--c2); } svg .target { stroke: var(--warn); stroke-dasharray: 5 3; }
svg .o-exact { fill: var(--c1); } svg .o-fuzzy { fill: var(--c2); } svg .o-generated { fill: var(--c3); }
svg .o-fallback { fill: var(--c4); } svg .o-error { fill: var(--c5); }
svg .used { fill: var(--bar); } svg .free { fill: var(--grid); }
.nodata { color: var(--muted); font-style: italic; padding: 24px 0; text-align: center; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--grid); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.legend span { display: inline-block; margin-right: 12px; } .sw { display: inline-block; width: 10px;
  height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
@media print { body { max-width: none; padding: 0; } figure { break-inside: avoid; }
  .grid { grid-template-columns: 1fr 1fr; } }
"#;

/// The whole page.
pub fn page(report: &Report, database: &str) -> String {
    let mut out = String::with_capacity(64 << 10);
    let title = format!("agentstore report: {}", esc(database));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n\
         <p class=\"meta\">Generated {} UTC by agentstore {}. Charts are drawn from aggregates: \
         memory as {AGE_BINS} age × {IMPORTANCE_BINS} importance bins, responses as two bins per \
         doubling of the time and {TIME_BINS} time bins, so the page stays small whatever the \
         agent holds. Hover a mark for its numbers.</p>\n",
        esc(&utc(report.generated_at)),
        env!("CARGO_PKG_VERSION"),
    );
    if report.agents.is_empty() {
        out.push_str("<p class=\"nodata\">No data: this database has no agents yet.</p>\n");
    }
    for agent in &report.agents {
        agent_section(&mut out, agent);
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn agent_section(out: &mut String, a: &AgentReport) {
    let name = esc(&a.agent);
    let _ = write!(
        out,
        "<section class=\"agent\" id=\"agent-{}\">\n<h2>Agent {name}</h2>\n",
        slug(&a.agent)
    );
    let entries = a.memory.total_entries;
    let _ = write!(
        out,
        "<p class=\"meta\">{entries} memory entries ({}), {} tool calls ({:.1}% from the cache), {} responses logged.</p>\n<div class=\"grid\">\n",
        bytes(a.memory_bytes),
        a.tools.total_tool_calls,
        a.tools.cache_hit_rate_pct,
        match &a.responses {
            ResponseTimeStats::Data(f) => f.total_responses,
            _ => 0,
        },
    );
    memory_use(out, a);
    if entries == 0 {
        no_data(
            out,
            "Importance of memory entries",
            "No memory entries yet.",
        );
        no_data(out, "Importance against age", "No memory entries yet.");
    } else {
        importance_histogram(out, a);
        importance_by_age(out, a);
    }
    match &a.responses {
        ResponseTimeStats::Data(_) => {
            response_times(out, a);
            outcomes(out, a);
        }
        _ => {
            no_data(out, "Response times", "No responses logged yet.");
            no_data(out, "Outcomes over time", "No responses logged yet.");
        }
    }
    if a.tools.tool_stats.is_empty() {
        no_data(out, "Tool calls", "No tool calls counted yet.");
    } else {
        tools(out, a);
    }
    if a.tool_cache.size == 0 {
        no_data(
            out,
            "Tool cache expiries",
            "The tool cache of this scope is empty.",
        );
    } else {
        expiries(out, a);
    }
    out.push_str("</div>\n");
    top_entries(out, a);
    out.push_str("</section>\n");
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn no_data(out: &mut String, title: &str, why: &str) {
    let _ = writeln!(
        out,
        "<figure class=\"chart empty\"><h3>{}</h3><p class=\"nodata\">No data: {}</p></figure>",
        esc(title),
        esc(why)
    );
}

/// An SVG chart under construction: a plot area inside margins, marks appended.
struct Svg {
    body: String,
    w: f64,
    h: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Svg {
    fn new(w: f64, h: f64) -> Self {
        Svg {
            body: String::new(),
            w,
            h,
            left: 56.0,
            right: 16.0,
            top: 12.0,
            bottom: 40.0,
        }
    }

    fn x0(&self) -> f64 {
        self.left
    }
    fn x1(&self) -> f64 {
        self.w - self.right
    }
    fn y0(&self) -> f64 {
        self.h - self.bottom
    }
    fn y1(&self) -> f64 {
        self.top
    }

    /// A rectangle with a hover title.
    fn rect(&mut self, class: &str, x: f64, y: f64, w: f64, h: f64, tip: &str) {
        let _ = write!(
            self.body,
            "<rect class=\"mark {class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}</title></rect>",
            w.max(0.0),
            h.max(0.0),
            esc(tip)
        );
    }

    fn circle(&mut self, class: &str, cx: f64, cy: f64, r: f64, tip: &str) {
        let _ = write!(
            self.body,
            "<circle class=\"mark {class}\" cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"{r:.1}\"><title>{}</title></circle>",
            esc(tip)
        );
    }

    /// A vertical marker line across the plot, with its label on row `row` (so close
    /// markers' labels do not overlap).
    fn vline(&mut self, class: &str, x: f64, row: usize, label: &str, tip: &str) {
        let (y0, y1) = (self.y0(), self.y1());
        let _ = write!(
            self.body,
            "<g class=\"mark\"><line class=\"marker {class}\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{y0:.1}\" y2=\"{y1:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text><title>{}</title></g>",
            x + 3.0,
            y1 + 10.0 + 12.0 * row as f64,
            esc(label),
            esc(tip)
        );
    }

    fn text(&mut self, x: f64, y: f64, anchor: &str, text: &str) {
        let _ = write!(
            self.body,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\">{}</text>",
            esc(text)
        );
    }

    /// Both axes with their labels, and y ticks from 0 to `y_max`.
    fn axes(&mut self, x_label: &str, y_label: &str, y_max: f64, y_fmt: impl Fn(f64) -> String) {
        let (x0, x1, y0, y1) = (self.x0(), self.x1(), self.y0(), self.y1());
        for k in 0..=4 {
            let v = y_max * k as f64 / 4.0;
            let y = y0 - (y0 - y1) * k as f64 / 4.0;
            let _ = write!(
                self.body,
                "<line class=\"gridline\" x1=\"{x0:.1}\" x2=\"{x1:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>"
            );
            self.text(x0 - 4.0, y + 4.0, "end", &y_fmt(v));
        }
        let _ = write!(
            self.body,
            "<line class=\"axis\" x1=\"{x0:.1}\" x2=\"{x1:.1}\" y1=\"{y0:.1}\" y2=\"{y0:.1}\"/>\
             <line class=\"axis\" x1=\"{x0:.1}\" x2=\"{x0:.1}\" y1=\"{y0:.1}\" y2=\"{y1:.1}\"/>"
        );
        self.text((x0 + x1) / 2.0, self.h - 6.0, "middle", x_label);
        let (cx, cy) = (12.0, (y0 + y1) / 2.0);
        let _ = write!(
            self.body,
            "<text x=\"{cx}\" y=\"{cy:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 {cx} {cy:.1})\">{}</text>",
            esc(y_label)
        );
    }

    /// The finished figure: the SVG with its text alternative, and a caption.
    fn figure(self, out: &mut String, id: &str, title: &str, desc: &str, caption: &str) {
        let _ = writeln!(
            out,
            "<figure class=\"chart\" id=\"{id}\"><h3>{t}</h3>\
             <svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"{id}-t {id}-d\">\
             <title id=\"{id}-t\">{t}</title><desc id=\"{id}-d\">{d}</desc>{body}</svg>\
             <figcaption>{c}</figcaption></figure>",
            t = esc(title),
            w = self.w,
            h = self.h,
            d = esc(desc),
            body = self.body,
            c = caption,
        );
    }
}

fn count_fmt(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.fract().abs() < 1e-9 || v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A "nice" upper bound for an axis that must reach `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 4.0, 8.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|m| *m >= v)
        .unwrap_or(10.0 * p)
}

fn memory_use(out: &mut String, a: &AgentReport) {
    let id = format!("{}-memory-use", slug(&a.agent));
    let mut svg = Svg::new(520.0, 150.0);
    svg.left = 90.0;
    svg.bottom = 30.0;
    let rows = [
        (
            "entries",
            a.memory.total_entries as f64,
            a.settings.max_entries as f64,
            format!(
                "{} of {} entries (the cap)",
                a.memory.total_entries, a.settings.max_entries
            ),
        ),
        (
            "bytes",
            a.memory_bytes as f64,
            a.memory_budget_bytes as f64,
            format!(
                "{} of {} (the byte budget)",
                bytes(a.memory_bytes),
                bytes(a.memory_budget_bytes)
            ),
        ),
    ];
    let (x0, x1) = (svg.x0(), svg.x1());
    for (i, (label, used, limit, tip)) in rows.iter().enumerate() {
        let y = 20.0 + i as f64 * 45.0;
        let share = if *limit > 0.0 {
            (used / limit).min(1.0)
        } else {
            0.0
        };
        svg.rect(
            "free",
            x0,
            y,
            x1 - x0,
            24.0,
            &format!("{label}: limit {limit}"),
        );
        svg.rect("used", x0, y, (x1 - x0) * share, 24.0, tip);
        svg.text(x0 - 6.0, y + 16.0, "end", label);
        svg.text(
            x1,
            y + 38.0,
            "end",
            &format!("{:.1}% of the limit", share * 100.0),
        );
    }
    svg.text(
        (x0 + x1) / 2.0,
        svg.h - 6.0,
        "middle",
        "share of the limit (%)",
    );
    let next = &a.next_cleanup;
    let caption = if next.enabled {
        format!(
            "The next regular cleanup runs in {} messages and would remove {} of today's entries.",
            next.messages_until, next.removes_entries
        )
    } else {
        "The regular cleanup is off (cleanup_interval 0).".to_string()
    };
    let desc = format!(
        "Memory use: {} entries of a cap of {}; {} of a budget of {}.",
        a.memory.total_entries,
        a.settings.max_entries,
        bytes(a.memory_bytes),
        bytes(a.memory_budget_bytes)
    );
    svg.figure(out, &id, "Memory against its limits", &desc, &esc(&caption));
}

fn importance_histogram(out: &mut String, a: &AgentReport) {
    let id = format!("{}-importance", slug(&a.agent));
    let mut svg = Svg::new(520.0, 240.0);
    let max = nice_max(
        a.importance_histogram
            .iter()
            .map(|b| b.count)
            .max()
            .unwrap_or(0) as f64,
    );
    svg.axes("importance", "entries", max, count_fmt);
    let (x0, x1, y0, y1) = (svg.x0(), svg.x1(), svg.y0(), svg.y1());
    let n = a.importance_histogram.len().max(1) as f64;
    let bw = (x1 - x0) / n;
    for (i, b) in a.importance_histogram.iter().enumerate() {
        let h = (y0 - y1) * b.count as f64 / max;
        let x = x0 + i as f64 * bw;
        svg.rect(
            "bar",
            x + 1.0,
            y0 - h,
            bw - 2.0,
            h,
            &format!("importance {:.1}–{:.1}: {} entries", b.lo, b.hi, b.count),
        );
        if i % 2 == 0 {
            svg.text(x, y0 + 14.0, "middle", &format!("{:.1}", b.lo));
        }
    }
    svg.text(x1, y0 + 14.0, "middle", "1.0");
    let desc = a
        .importance_histogram
        .iter()
        .map(|b| format!("{:.1}–{:.1}: {}", b.lo, b.hi, b.count))
        .collect::<Vec<_>>()
        .join("; ");
    let caption = match a.memory.avg_importance_score {
        Some(avg) => format!("Mean importance {avg:.3}."),
        None => String::new(),
    };
    svg.figure(
        out,
        &id,
        "Importance of memory entries",
        &format!("Entries per importance bin: {desc}."),
        &caption,
    );
}

fn importance_by_age(out: &mut String, a: &AgentReport) {
    let id = format!("{}-age", slug(&a.agent));
    let mut svg = Svg::new(520.0, 260.0);
    let age_hours = a.age_bin_hours * AGE_BINS as f64;
    let (unit, per_hour) = age_unit(age_hours);
    svg.axes(&format!("age ({unit})"), "importance", 1.0, |v| {
        format!("{v:.2}")
    });
    let (x0, x1, y0, y1) = (svg.x0(), svg.x1(), svg.y0(), svg.y1());
    let cw = (x1 - x0) / AGE_BINS as f64;
    let ch = (y0 - y1) / IMPORTANCE_BINS as f64;
    let most = a
        .importance_by_age
        .iter()
        .map(|c| c.count)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    for c in &a.importance_by_age {
        let cx = x0 + (c.age_bin as f64 + 0.5) * cw;
        let cy = y0 - (c.importance_bin as f64 + 0.5) * ch;
        let r = 2.0 + (cw.min(ch) / 2.0 - 2.0) * (c.count as f64 / most).sqrt();
        let lo_age = c.age_bin as f64 * a.age_bin_hours;
        let tip = format!(
            "age {:.1}–{:.1} {unit}, importance {:.1}–{:.1}: {} entries, {} removed by the next cleanup",
            lo_age * per_hour,
            (lo_age + a.age_bin_hours) * per_hour,
            c.importance_bin as f64 / IMPORTANCE_BINS as f64,
            (c.importance_bin + 1) as f64 / IMPORTANCE_BINS as f64,
            c.count,
            c.doomed
        );
        let class = if c.doomed > 0 { "doomed" } else { "kept" };
        svg.circle(class, cx, cy, r, &tip);
    }
    for k in 0..=4 {
        let x = x0 + (x1 - x0) * k as f64 / 4.0;
        svg.text(
            x,
            y0 + 14.0,
            "middle",
            &format!("{:.1}", age_hours * per_hour * k as f64 / 4.0),
        );
    }
    let doomed: u64 = a.importance_by_age.iter().map(|c| c.doomed).sum();
    let desc = format!(
        "{} entries by age (0 to {:.1} hours) and importance; {} of them, in the red cells, are what the next regular cleanup would remove.",
        a.memory.total_entries, age_hours, doomed
    );
    let caption = "<span class=\"legend\"><span><i class=\"sw\" style=\"background:var(--bar)\"></i>kept</span>\
        <span><i class=\"sw\" style=\"background:var(--warn)\"></i>holds entries the next regular cleanup removes</span></span> \
        Each circle is a bin; its area grows with its entries.";
    svg.figure(out, &id, "Importance against age", &desc, caption);
}

/// The unit an age axis of `hours` reads best in, and how many of it make an hour.
fn age_unit(hours: f64) -> (&'static str, f64) {
    match hours {
        h if h < 2.0 / 60.0 => ("seconds", 3600.0),
        h if h < 2.0 => ("minutes", 60.0),
        h if h < 48.0 => ("hours", 1.0),
        _ => ("days", 1.0 / 24.0),
    }
}

fn response_times(out: &mut String, a: &AgentReport) {
    let ResponseTimeStats::Data(f) = &a.responses else {
        return;
    };
    let id = format!("{}-response-times", slug(&a.agent));
    let mut svg = Svg::new(520.0, 250.0);
    let bins = &a.response_time_histogram;
    let max = nice_max(bins.iter().map(|b| b.count).max().unwrap_or(0) as f64);
    svg.axes(
        "response time (seconds, log scale)",
        "responses",
        max,
        count_fmt,
    );
    let (x0, x1, y0, y1) = (svg.x0(), svg.x1(), svg.y0(), svg.y1());
    // The log axis spans whole decades holding the bins, the target and the
    // percentiles (times under 0.1 µs are drawn at 0.1 µs).
    let positive = |v: f64| v.max(1e-7);
    let values = bins.iter().flat_map(|b| [b.lo, b.hi]).chain([
        f.target_response_time,
        f.p95_response_time,
        f.min_response_time,
    ]);
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(positive(v)), hi.max(positive(v)))
    });
    let llo = lo.log10().floor();
    let lhi = hi.log10().ceil().max(llo + 1.0);
    let x = |v: f64| x0 + (x1 - x0) * (positive(v).log10() - llo) / (lhi - llo);
    for b in bins {
        let h = (y0 - y1) * b.count as f64 / max;
        let (xa, xb) = (x(b.lo.max(lo)), x(b.hi));
        svg.rect(
            "bar",
            xa,
            y0 - h,
            (xb - xa - 1.0).max(1.0),
            h,
            &format!(
                "{} – {}: {} responses",
                seconds(b.lo),
                seconds(b.hi),
                b.count
            ),
        );
    }
    let mut decade = llo;
    while decade <= lhi {
        svg.text(
            x(10f64.powf(decade)),
            y0 + 14.0,
            "middle",
            &seconds(10f64.powf(decade)),
        );
        decade += 1.0;
    }
    for (row, class, label, v) in [
        ("p50", "p50", f.p50_response_time),
        ("p90", "p90", f.p90_response_time),
        ("p95", "p95", f.p95_response_time),
        ("target", "target", f.target_response_time),
    ]
    .into_iter()
    .enumerate()
    .map(|(row, (class, label, v))| (row, class, label, v))
    {
        svg.vline(class, x(v), row, label, &format!("{label}: {}", seconds(v)));
    }
    let desc = format!(
        "{} responses: p50 {}, p90 {}, p95 {}, target {}; {:.1}% under the target.",
        f.total_responses,
        seconds(f.p50_response_time),
        seconds(f.p90_response_time),
        seconds(f.p95_response_time),
        seconds(f.target_response_time),
        f.target_achievement_rate
    );
    let caption = format!(
        "{} Generation errors are not response times and are left out.",
        esc(&desc)
    );
    svg.figure(out, &id, "Response times", &desc, &caption);
}

const OUTCOMES: [(&str, &str, &str); 5] = [
    ("exact", "o-exact", "--c1"),
    ("fuzzy", "o-fuzzy", "--c2"),
    ("generated", "o-generated", "--c3"),
    ("fallback", "o-fallback", "--c4"),
    ("error", "o-error", "--c5"),
];

fn outcomes(out: &mut String, a: &AgentReport) {
    let id = format!("{}-outcomes", slug(&a.agent));
    let mut svg = Svg::new(520.0, 250.0);
    let bins = &a.outcomes_over_time;
    let total =
        |b: &agentstore::report::OutcomeBin| b.exact + b.fuzzy + b.generated + b.fallback + b.error;
    let max = nice_max(bins.iter().map(total).max().unwrap_or(0) as f64);
    svg.axes("time (UTC)", "responses per bin", max, count_fmt);
    let (x0, x1, y0, y1) = (svg.x0(), svg.x1(), svg.y0(), svg.y1());
    let bw = (x1 - x0) / bins.len().max(1) as f64;
    let mut sums = [0u64; 5];
    for (i, b) in bins.iter().enumerate() {
        let counts = [b.exact, b.fuzzy, b.generated, b.fallback, b.error];
        let mut base = y0;
        for (k, ((name, class, _), n)) in OUTCOMES.iter().zip(counts).enumerate() {
            sums[k] += n;
            if n == 0 {
                continue;
            }
            let h = (y0 - y1) * n as f64 / max;
            svg.rect(
                class,
                x0 + i as f64 * bw + 1.0,
                base - h,
                bw - 2.0,
                h,
                &format!("{} – {}: {n} {name}", utc(b.from), utc(b.to)),
            );
            base -= h;
        }
    }
    if let (Some(first), Some(last)) = (bins.first(), bins.last()) {
        svg.text(x0, y0 + 14.0, "start", &utc(first.from));
        svg.text(x1, y0 + 14.0, "end", &utc(last.to));
    }
    let desc = OUTCOMES
        .iter()
        .zip(sums)
        .map(|((name, _, _), n)| format!("{n} {name}"))
        .collect::<Vec<_>>()
        .join(", ");
    let legend: String = OUTCOMES
        .iter()
        .zip(sums)
        .map(|((name, _, color), n)| {
            format!(
                "<span><i class=\"sw\" style=\"background:var({color})\"></i>{name} ({n})</span>"
            )
        })
        .collect();
    svg.figure(
        out,
        &id,
        "Outcomes over time",
        &format!("Responses by outcome over {TIME_BINS} time bins: {desc}."),
        &format!("<span class=\"legend\">{legend}</span>"),
    );
}

fn tools(out: &mut String, a: &AgentReport) {
    let id = format!("{}-tools", slug(&a.agent));
    let mut tools: Vec<(&String, &agentstore::ToolCallStats)> = a.tools.tool_stats.iter().collect();
    tools.sort_by(|x, y| y.1.total_calls.cmp(&x.1.total_calls).then(x.0.cmp(y.0)));
    let hidden = tools.len().saturating_sub(MAX_TOOLS);
    tools.truncate(MAX_TOOLS);
    let row_h = 26.0;
    let mut svg = Svg::new(520.0, 60.0 + row_h * tools.len() as f64);
    svg.left = 110.0;
    svg.right = 170.0;
    let max = nice_max(tools.iter().map(|t| t.1.total_calls).max().unwrap_or(0) as f64);
    let (x0, x1, y0) = (svg.x0(), svg.x1(), svg.y0());
    for (i, (name, t)) in tools.iter().enumerate() {
        let y = svg.y1() + i as f64 * row_h;
        let w = (x1 - x0) * t.total_calls as f64 / max;
        let hit_w = (x1 - x0) * t.cache_hits as f64 / max;
        let rate = if t.total_calls > 0 {
            t.cache_hits as f64 * 100.0 / t.total_calls as f64
        } else {
            0.0
        };
        let tip = format!(
            "{name}: {} calls, {} hits ({rate:.1}%), {} errors, mean {}",
            t.total_calls,
            t.cache_hits,
            t.errors,
            seconds(t.avg_time)
        );
        svg.rect("free", x0, y + 2.0, w, row_h - 8.0, &tip);
        svg.rect("used", x0, y + 2.0, hit_w, row_h - 8.0, &tip);
        svg.text(
            x0 - 6.0,
            y + 15.0,
            "end",
            &crate::cli::output::snippet(name, 16),
        );
        svg.text(
            x0 + w + 4.0,
            y + 15.0,
            "start",
            &format!("{rate:.0}% hits, mean {}", seconds(t.avg_time)),
        );
    }
    let _ = write!(
        svg.body,
        "<line class=\"axis\" x1=\"{x0:.1}\" x2=\"{x1:.1}\" y1=\"{y0:.1}\" y2=\"{y0:.1}\"/>"
    );
    svg.text(x0, y0 + 14.0, "middle", "0");
    svg.text(x1, y0 + 14.0, "middle", &count_fmt(max));
    svg.text(
        (x0 + x1) / 2.0,
        svg.h - 6.0,
        "middle",
        "calls (dark: answered from the cache)",
    );
    let desc = tools
        .iter()
        .map(|(n, t)| {
            format!(
                "{n}: {} calls, {} hits, mean {}",
                t.total_calls,
                t.cache_hits,
                seconds(t.avg_time)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let caption = format!(
        "{} calls over all tools, {:.1}% from the cache.{}",
        a.tools.total_tool_calls,
        a.tools.cache_hit_rate_pct,
        if hidden > 0 {
            format!(" {hidden} less used tools are not drawn.")
        } else {
            String::new()
        }
    );
    svg.figure(
        out,
        &id,
        "Tool calls",
        &format!("Per tool: {desc}."),
        &esc(&caption),
    );
}

fn expiries(out: &mut String, a: &AgentReport) {
    let id = format!("{}-expiries", slug(&a.agent));
    let c = &a.tool_cache;
    let mut svg = Svg::new(520.0, 230.0);
    let mut bars: Vec<(String, u64)> = vec![("expired".to_string(), c.expired)];
    bars.extend(
        c.expiring
            .iter()
            .map(|b| (b.within.replace("within ", "≤ "), b.count)),
    );
    let max = nice_max(bars.iter().map(|b| b.1).max().unwrap_or(0) as f64);
    svg.axes("time to expiry", "cached results", max, count_fmt);
    let (x0, x1, y0, y1) = (svg.x0(), svg.x1(), svg.y0(), svg.y1());
    let bw = (x1 - x0) / bars.len() as f64;
    for (i, (label, n)) in bars.iter().enumerate() {
        let h = (y0 - y1) * *n as f64 / max;
        let class = if i == 0 { "doomed" } else { "bar" };
        let x = x0 + i as f64 * bw;
        svg.rect(
            class,
            x + 2.0,
            y0 - h,
            bw - 4.0,
            h,
            &format!("{label}: {n} results"),
        );
        svg.text(x + bw / 2.0, y0 + 14.0, "middle", label);
    }
    let desc = format!(
        "{} cached results in scope {}: {} expired, {}.",
        c.size,
        a.tools.scope,
        c.expired,
        c.expiring
            .iter()
            .map(|b| format!("{} {}", b.count, b.within))
            .collect::<Vec<_>>()
            .join(", ")
    );
    svg.figure(out, &id, "Tool cache expiries", &desc, &esc(&desc));
}

fn top_entries(out: &mut String, a: &AgentReport) {
    let _ = writeln!(out, "<h3>Most important entries (top {TOP_ENTRIES})</h3>");
    if a.top_entries.is_empty() {
        out.push_str("<p class=\"nodata\">No data: no memory entries yet.</p>\n");
        return;
    }
    out.push_str(
        "<table class=\"top\"><thead><tr><th class=\"num\">id</th><th class=\"num\">importance</th>\
         <th>created (UTC)</th><th class=\"num\">bytes</th><th>content</th></tr></thead><tbody>\n",
    );
    for e in &a.top_entries {
        let _ = writeln!(
            out,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{:.2}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            e.id,
            e.importance,
            esc(&utc(e.created_at)),
            e.size_bytes,
            esc(&e.content)
        );
    }
    out.push_str("</tbody></table>\n");
}
