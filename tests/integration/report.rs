//! `agentstore report`: the page parses as HTML5, holds one SVG with drawn marks per
//! chart, loads nothing from another host, carries the numbers the stats commands
//! print, says "no data" for empty agents and files, and renders in headless
//! Chromium (skipped with its reason where Chromium is missing, unless
//! `AGENTSTORE_REQUIRE_CHROMIUM` is set, as the README's test command sets it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agentstore::{LoggedResponse, Outcome, Store, StoreOptions};
use scraper::{Html, Selector};
use serde_json::{Value, json};

use crate::common::{TempDb, TestResult, agentstore, json_of};

/// The charts of an agent with data in every table group.
const CHARTS: [&str; 7] = [
    "memory-use",
    "importance",
    "age",
    "response-times",
    "outcomes",
    "tools",
    "expiries",
];

fn sel(s: &str) -> Selector {
    Selector::parse(s).expect("a selector")
}

/// An agent with memory, tool calls, cached results and logged responses.
fn populated(db: &TempDb) -> TestResult {
    let store = Store::open(&db.path, StoreOptions::default())?;
    let bot = store.agent("bot")?;
    let memory = store.memory(&bot);
    for i in 0..150 {
        memory.add(
            &format!("fact {i} <b>&\"quoted\"</b>"),
            (i % 11) as f64 / 10.0,
        )?;
    }
    let tools = store.tool_cache(&bot);
    for i in 0..5 {
        tools.put(
            "search",
            &json!({ "q": i }),
            &json!({ "hits": i }),
            Duration::from_secs(60 * (i + 1)),
        )?;
    }
    tools.add_counts(&[(
        "search".into(),
        agentstore::ToolCounts {
            total_calls: 9,
            cache_hits: 4,
            errors: 1,
            total_time: 0.9,
        },
    )])?;
    let responses = store.response_cache(&bot);
    responses.put("what is the capital of france", "Paris")?;
    let now = store.now_micros();
    let rows: Vec<LoggedResponse> = (0..400)
        .map(|i| LoggedResponse {
            at: now - 1_000_000 * (400 - i),
            duration: 0.001 * (1 + i % 50) as f64,
            outcome: [
                Outcome::Exact,
                Outcome::Fuzzy,
                Outcome::Generated,
                Outcome::Fallback,
                Outcome::Error,
            ][i as usize % 5],
        })
        .collect();
    responses.log(&rows, 100_000)?;
    store.agent("idle")?;
    Ok(())
}

fn page_of(db: &TempDb, args: &[&str]) -> String {
    let out = agentstore(db)
        .args(["report", "--output", "-"])
        .args(args)
        .assert()
        .success();
    String::from_utf8(out.get_output().stdout.clone()).expect("UTF-8")
}

/// Every `src`, `href` and `url(...)` in the page points nowhere else.
fn assert_no_remote_reference(page: &str) {
    let doc = Html::parse_document(page);
    for attr in ["src", "href", "xlink:href"] {
        for el in doc.select(&sel(&format!("[{}]", attr.replace(':', "\\:")))) {
            let v = el.value().attr(attr).unwrap_or("");
            assert!(
                !v.contains("http://") && !v.contains("https://") && !v.starts_with("//"),
                "{attr}={v}"
            );
        }
    }
    for (i, _) in page.match_indices("url(") {
        let arg = &page[i..(i + 80).min(page.len())];
        assert!(!arg.contains("http"), "{arg}");
    }
    assert!(!page.contains("<script"), "no script");
    assert!(!page.contains("@import"), "no imported style");
}

#[test]
fn the_page_parses_and_has_every_chart_with_marks() -> TestResult {
    let db = TempDb::new();
    populated(&db)?;
    let page = page_of(&db, &["--agent", "bot"]);
    let doc = Html::parse_document(&page);
    assert!(doc.errors.is_empty(), "HTML errors: {:?}", doc.errors);
    assert_no_remote_reference(&page);
    for chart in CHARTS {
        let fig = doc
            .select(&sel(&format!("figure#bot-{chart}")))
            .next()
            .unwrap_or_else(|| panic!("chart {chart} is missing"));
        let svgs: Vec<_> = fig.select(&sel("svg")).collect();
        assert_eq!(svgs.len(), 1, "{chart}: one SVG");
        let svg = svgs[0];
        assert!(
            svg.select(&sel("title")).next().is_some(),
            "{chart}: a title"
        );
        let desc = svg.select(&sel("desc")).next().expect("a desc");
        assert!(
            !desc.text().collect::<String>().trim().is_empty(),
            "{chart}"
        );
        let marks: Vec<_> = svg.select(&sel(".mark")).collect();
        assert!(!marks.is_empty(), "{chart}: drawn marks");
        for mark in marks {
            // Hover shows the mark's numbers.
            let tip: String = mark
                .select(&sel("title"))
                .next()
                .map(|t| t.text().collect())
                .unwrap_or_default();
            assert!(tip.chars().any(|c| c.is_ascii_digit()), "{chart}: {tip:?}");
        }
        // Axis labels: what is measured, with its unit where it has one.
        let texts: String = svg.select(&sel("text")).flat_map(|t| t.text()).collect();
        let labels = match chart {
            "memory-use" => &["share of the limit (%)"][..],
            "importance" => &["importance", "entries"],
            "age" => &["age (", "importance"],
            "response-times" => &["response time (seconds, log scale)", "responses"],
            "outcomes" => &["time (UTC)", "responses per bin"],
            "tools" => &["calls (dark: answered from the cache)"],
            _ => &["time to expiry", "cached results"],
        };
        for label in labels {
            assert!(
                texts.contains(label),
                "{chart}: axis label {label:?} in {texts}"
            );
        }
    }
    // The cleanup's victims are marked: all but floor(entries * 0.7), and exactly
    // the lowest by (importance, created), as the cleanup itself picks them.
    assert!(doc.select(&sel("figure#bot-age circle.doomed")).count() > 0);
    let report: Value = serde_json::from_str(&json_report(&db, "bot"))?;
    let cells = report["agents"][0]["importance_by_age"]
        .as_array()
        .unwrap()
        .clone();
    let doomed: u64 = cells.iter().map(|c| c["doomed"].as_u64().unwrap()).sum();
    let entries = report["agents"][0]["memory"]["total_entries"]
        .as_u64()
        .unwrap();
    let expected = entries - (entries as f64 * 0.7).floor() as u64;
    assert_eq!(doomed, expected);
    assert_eq!(
        report["agents"][0]["next_cleanup"]["removes_entries"],
        expected
    );
    let store = Store::open(&db.path, StoreOptions::existing())?;
    let lowest: Vec<f64> = store
        .memory(&store.existing_agent("bot")?)
        .list(agentstore::ListOrder::Importance, u64::MAX)?
        .iter()
        .rev()
        .take(expected as usize)
        .map(|e| e.importance)
        .collect();
    let top_doomed_bin = cells
        .iter()
        .filter(|c| c["doomed"].as_u64().unwrap() > 0)
        .map(|c| c["importance_bin"].as_u64().unwrap())
        .max()
        .unwrap();
    let highest_doomed = lowest.iter().cloned().fold(0.0, f64::max);
    assert_eq!(top_doomed_bin, ((highest_doomed * 10.0) as u64).min(9));
    // Content is escaped, not markup.
    assert!(page.contains("&lt;b&gt;&amp;&quot;quoted&quot;&lt;/b&gt;"));
    assert!(doc.select(&sel("table.top td b")).next().is_none());
    // Light and dark, and print.
    assert!(page.contains("prefers-color-scheme: dark") && page.contains("@media print"));
    Ok(())
}

/// The sum of `keys` over the objects of the array `v`.
fn total(v: &Value, keys: &[&str]) -> u64 {
    v.as_array()
        .expect("an array")
        .iter()
        .flat_map(|b| keys.iter().map(move |k| b[*k].as_u64().expect("a count")))
        .sum()
}

fn json_report(db: &TempDb, agent: &str) -> String {
    let out = agentstore(db)
        .args(["--json", "report", "--agent", agent])
        .assert()
        .success();
    String::from_utf8(out.get_output().stdout.clone()).expect("UTF-8")
}

#[test]
fn the_figures_equal_what_the_stats_commands_print() -> TestResult {
    let db = TempDb::new();
    populated(&db)?;
    let report: Value = serde_json::from_str(&json_report(&db, "bot"))?;
    let a = &report["agents"][0];
    let memory = json_of(&db, &["memory", "stats", "--agent", "bot"]);
    let responses = json_of(&db, &["responses", "stats", "--agent", "bot"]);
    let tools = json_of(&db, &["tools", "stats", "--agent", "bot"]);
    // Ages grow between two commands: compare everything else exactly.
    let without_age = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("oldest_entry_age_hours");
        v
    };
    assert_eq!(without_age(&a["memory"]), without_age(&memory));
    assert_eq!(a["responses"], responses);
    let tools = if tools.is_array() {
        tools[0].clone()
    } else {
        tools
    };
    assert_eq!(a["tools"], tools);
    // `stats` (the SQL views) shows the same memory, tool and response figures.
    let stats = json_of(&db, &["stats", "--agent", "bot"]);
    assert_eq!(
        stats["memory_stats"][0]["total_entries"],
        a["memory"]["total_entries"]
    );
    assert_eq!(stats["memory_stats"][0]["total_bytes"], a["memory_bytes"]);
    assert_eq!(
        stats["tool_stats"][0]["total_calls"],
        a["tools"]["total_tool_calls"]
    );
    assert_eq!(stats["response_stats"][0]["total_logged"], 400);
    // The histograms add up to the totals.
    let entries = total(&a["importance_histogram"], &["count"]);
    assert_eq!(entries, memory["total_entries"].as_u64().unwrap());
    let cells = total(&a["importance_by_age"], &["count"]);
    assert_eq!(cells, entries);
    let timed = total(&a["response_time_histogram"], &["count"]);
    assert_eq!(timed, responses["total_responses"].as_u64().unwrap());
    let logged = total(
        &a["outcomes_over_time"],
        &["exact", "fuzzy", "generated", "fallback", "error"],
    );
    assert_eq!(logged, 400, "every logged response, errors included");
    let c = &a["tool_cache"];
    let live = total(&c["expiring"], &["count"]);
    assert_eq!(
        live + c["expired"].as_u64().unwrap(),
        c["size"].as_u64().unwrap()
    );
    assert_eq!(c["size"], tools["cache_size"]);
    // The page shows those numbers.
    let page = page_of(&db, &["--agent", "bot"]);
    assert!(page.contains(&format!("{} memory entries", memory["total_entries"])));
    assert!(page.contains(&format!("{} responses: p50", responses["total_responses"])));
    assert!(page.contains("9 calls over all tools, 44.4% from the cache"));
    Ok(())
}

#[test]
fn empty_agents_and_an_empty_file_say_there_is_no_data() -> TestResult {
    let db = TempDb::new();
    agentstore(&db).arg("init").assert().success();
    let page = page_of(&db, &[]);
    assert!(Html::parse_document(&page).errors.is_empty());
    assert!(page.contains("No data: this database has no agents yet."));
    assert!(!page.contains("<svg"), "no empty axes");
    populated(&db)?;
    let page = page_of(&db, &["--agent", "idle"]);
    let doc = Html::parse_document(&page);
    assert!(doc.errors.is_empty());
    // The memory-use chart has its limits to show; every other chart says why not.
    assert_eq!(doc.select(&sel("figure.chart svg")).count(), 1);
    assert_eq!(doc.select(&sel("figure.empty .nodata")).count(), 6);
    // All agents: both sections.
    let page = page_of(&db, &[]);
    assert_eq!(
        Html::parse_document(&page)
            .select(&sel("section.agent"))
            .count(),
        2
    );
    // An unknown agent and a missing file are errors, and write nothing.
    let out = agentstore(&db)
        .args(["report", "--agent", "nobody", "--output"])
        .arg(db.dir.path().join("r.html"))
        .assert()
        .code(1);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("no agent named"));
    assert!(!db.dir.path().join("r.html").exists());
    Ok(())
}

#[test]
fn the_page_goes_where_export_output_would() -> TestResult {
    let db = TempDb::new();
    populated(&db)?;
    let dir = db.dir.path();
    // The default name, in the working directory.
    let out = agentstore(&db)
        .current_dir(dir)
        .arg("report")
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains("agentstore-report.html"));
    let default = dir.join("agentstore-report.html");
    assert!(std::fs::read_to_string(&default)?.starts_with("<!DOCTYPE html>"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&default)?.permissions().mode() & 0o777,
        0o600
    );
    // A directory is refused before anything is read.
    agentstore(&db)
        .args(["report", "--output"])
        .arg(dir)
        .assert()
        .code(2);
    Ok(())
}

/// Chromium, where it is installed.
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join(name))
                    .find(|p| p.is_file())
            })
        })
}

fn headless(browser: &Path, profile: &Path) -> Command {
    let mut c = Command::new(browser);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[test]
fn the_page_renders_in_headless_chromium() -> TestResult {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("AGENTSTORE_REQUIRE_CHROMIUM").is_none(),
            "AGENTSTORE_REQUIRE_CHROMIUM is set but no chromium is on PATH"
        );
        eprintln!("skipped: no chromium on PATH (Debian: apt-get install -y chromium)");
        return Ok(());
    };
    let db = TempDb::new();
    populated(&db)?;
    let html = db.dir.path().join("report.html");
    agentstore(&db)
        .args(["report", "--agent", "bot", "--output"])
        .arg(&html)
        .assert()
        .success();
    let url = format!("file://{}", html.display());
    let dom = headless(&browser, &db.dir.path().join("profile-dom"))
        .arg("--dump-dom")
        .arg(&url)
        .output()?;
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let doc = Html::parse_document(&String::from_utf8_lossy(&dom.stdout));
    for chart in CHARTS {
        assert!(
            doc.select(&sel(&format!("figure#bot-{chart} svg .mark")))
                .next()
                .is_some(),
            "the browser's DOM lacks chart {chart}"
        );
    }
    // Not blank: many distinct colours, not mostly background, a light background.
    let pixels = screenshot(
        &browser,
        db.dir.path(),
        "light",
        &["--window-size=1200,1800"],
        &url,
    )?;
    let colours: std::collections::HashSet<&[u8; 3]> = pixels.iter().collect();
    let background = pixels.iter().filter(|p| **p == [255, 255, 255]).count();
    assert!(
        colours.len() > 50,
        "{} colours: a blank page?",
        colours.len()
    );
    assert!(
        background < pixels.len() * 95 / 100,
        "mostly background: {background}/{}",
        pixels.len()
    );
    assert_eq!(pixels[0], [255, 255, 255], "the light page's background");
    // In dark mode the page is dark.
    let dark = screenshot(
        &browser,
        db.dir.path(),
        "dark",
        &["--force-dark-mode", "--window-size=800,600"],
        &url,
    )?;
    assert_eq!(dark[0], [18, 21, 27], "the dark page's background");
    Ok(())
}

/// A headless screenshot of `url` with `args` (a fresh profile each), as RGB pixels.
fn screenshot(
    browser: &Path,
    dir: &Path,
    name: &str,
    args: &[&str],
    url: &str,
) -> Result<Vec<[u8; 3]>, Box<dyn std::error::Error>> {
    let shot = dir.join(format!("{name}.png"));
    let run = headless(browser, &dir.join(format!("profile-{name}")))
        .args(args)
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url)
        .output()?;
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot)?));
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("no size")?];
    let info = reader.next_frame(&mut buf)?;
    let channels = info.color_type.samples();
    Ok(buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect())
}
