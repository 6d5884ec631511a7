//! The main job as a user runs it, on both engines: `demo` twice on one database, `chat` with piped input,
//! an agent restarted mid-conversation, and `stats`.

use serde_json::Value;

use crate::engines::{Db, engines};
use crate::http::{Response, TestServer};

fn demo_json(db: &Db) -> Value {
    db.json(&["demo", "--messages", "30", "--seed", "7"])
}

engines! {
    fn the_demo_run_twice_restores_its_state_and_hits_more(db: &Db) -> TestResult {
        let first = demo_json(db);
        assert_eq!(first["previous_run"], Value::Null);
        assert_eq!(first["memory_phase"]["added"], 600);
        // Past the cleanup interval and the byte budget: most of the 600 entries are gone.
        let kept = first["memory_phase"]["entries_after"].as_u64().unwrap();
        assert!(kept > 0 && kept < 300, "{kept}");
        assert!(first["memory_phase"]["memory_mb_after"].as_f64().unwrap() <= 0.25);
        assert_eq!(first["tool_phase"]["requests"], 12);
        assert_eq!(first["tool_phase"]["succeeded"], 12);
        assert!(first["response_phase"]["generated"].as_u64().unwrap() > 0);
        assert!(
            first["stats"]["llm"]
                .as_str()
                .unwrap()
                .starts_with("simulated")
        );

        let second = demo_json(db);
        let found = &second["previous_run"];
        assert_eq!(
            found["memory_entries"], first["stats"]["memory"]["total_entries"],
            "{found}"
        );
        assert_eq!(
            found["cached_tool_results"],
            first["stats"]["tools"]["cache_size"]
        );
        assert_eq!(
            found["cached_responses"],
            first["optimization"]["cache_entries"]
        );
        assert_eq!(found["logged_responses"], 30);

        let rate = |v: &Value, phase: &str| v[phase]["cache_hit_rate_pct"].as_f64().unwrap();
        assert!(rate(&second, "tool_phase") > rate(&first, "tool_phase"));
        // Only the clock (never cached) runs again.
        assert_eq!(second["tool_phase"]["cache_hits"], 11);
        assert!(rate(&second, "response_phase") > rate(&first, "response_phase"));
        assert_eq!(rate(&second, "response_phase"), 100.0);
        assert_eq!(second["response_phase"]["generated"], 0);
        // The target was tuned by the first run and kept.
        assert_eq!(
            second["optimization"]["old_target"],
            first["optimization"]["new_target"]
        );
        Ok(())
    }
}

engines! {
    fn the_demo_prints_readable_phases_and_no_progress_off_a_terminal(db: &Db) -> TestResult {
        let run = || {
            db.cli()
                .args(["demo", "--messages", "8", "--simulated-latency", "none"])
                .assert()
                .success()
        };
        let out = run();
        let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert!(stdout.contains("No previous run found"), "{stdout}");
        for part in [
            "1. Memory",
            "2. Tools",
            "3. Responses",
            "4. Optimize",
            "5. Stats",
        ] {
            assert!(stdout.contains(part), "{part} missing:\n{stdout}");
        }
        assert!(
            out.get_output().stderr.is_empty(),
            "stderr is quiet when not a terminal"
        );
        let again = run();
        let stdout = String::from_utf8_lossy(&again.get_output().stdout).into_owned();
        assert!(stdout.contains("Found from a previous run:"), "{stdout}");
        Ok(())
    }
}

fn chat(db: &Db, args: &[&str], input: &str) -> assert_cmd::assert::Assert {
    db.cli()
        .arg("chat")
        .args(args)
        .write_stdin(input.to_string())
        .assert()
}

engines! {
    fn chat_answers_piped_lines_with_time_and_outcome(db: &Db) -> TestResult {
        let out = chat(
            db,
            &["--agent", "bot", "--simulated-latency", "none"],
            "what is a WAL?\n\nwhat is a WAL?\n/stats\n/context\n/bogus\n/quit\nnot read\n",
        )
        .success();
        let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(
            lines[0].starts_with("[simulated] About \"what is a WAL?\""),
            "{stdout}"
        );
        assert!(
            lines[1].trim_start().starts_with('(') && lines[1].ends_with(", generated)"),
            "{stdout}"
        );
        assert_eq!(lines[2], lines[0], "the repeat gets the cached answer");
        assert!(lines[3].ends_with(", exact)"), "{stdout}");
        assert!(stdout.contains("memory: 4 entries"), "{stdout}");
        assert!(stdout.contains("responses: 2 answered"), "{stdout}");
        assert!(
            stdout.contains("what is a WAL?"),
            "the context lists the exchange"
        );
        assert!(!stdout.contains("not read"));
        let stderr = String::from_utf8_lossy(&out.get_output().stderr);
        assert!(stderr.contains("unknown command /bogus"), "{stderr}");
        Ok(())
    }
}

engines! {
    fn chat_with_json_prints_one_object_per_reply(db: &Db) -> TestResult {
        let out = db.cli()
            .args([
                "--json",
                "chat",
                "--agent",
                "bot",
                "--simulated-latency",
                "none",
            ])
            .write_stdin("hi\nhi\n")
            .assert()
            .success();
        let replies: Vec<Value> = String::from_utf8_lossy(&out.get_output().stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0]["outcome"], "generated");
        assert_eq!(replies[1]["outcome"], "exact");
        assert!(replies[1]["response_time"].as_f64().unwrap() >= 0.0);
        Ok(())
    }
}

engines! {
    /// The agent process ends between two messages; the new process answers the repeated
    /// message from the cache and remembers the whole conversation.
    fn an_agent_restarted_mid_conversation_answers_from_the_cache(db: &Db) -> TestResult {
        let args = [
            "--json",
            "chat",
            "--agent",
            "bot",
            "--simulated-latency",
            "none",
        ];
        let first = db.cli()
            .args(args)
            .write_stdin("tell me about sqlite\nand about rust\n")
            .assert()
            .success();
        let first: Vec<Value> = String::from_utf8_lossy(&first.get_output().stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let second = db.cli()
            .args(args)
            .write_stdin("tell me about sqlite\n")
            .assert()
            .success();
        let reply: Value = serde_json::from_slice(&second.get_output().stdout).unwrap();
        assert_eq!(reply["outcome"], "exact");
        assert_eq!(reply["response"], first[0]["response"]);
        let stats = db.json(&["memory", "stats", "--agent", "bot"]);
        assert_eq!(stats["total_entries"], 6);
        Ok(())
    }
}

engines! {
    fn chat_through_an_openai_compatible_server(db: &Db) -> TestResult {
        let server = TestServer::start(|r| {
            let user = r.json()["messages"][1]["content"]
                .as_str()
                .unwrap_or("")
                .to_string();
            Response::completion(&format!("server says: {user}"))
        });
        let out = db.cli()
            .env("AGENTSTORE_LLM_API_KEY", "sk-chat-secret")
            .args([
                "chat", "--agent", "bot", "--llm", "openai", "--model", "tiny",
            ])
            .args(["--base-url", &server.base_url()])
            .write_stdin("ping\n")
            .assert()
            .success();
        let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert!(stdout.starts_with("server says: ping\n"), "{stdout}");
        let request = &server.requests()[0];
        assert_eq!(request.json()["model"], "tiny");
        assert_eq!(
            request.header("authorization"),
            Some("Bearer sk-chat-secret")
        );
        Ok(())
    }
}

engines! {
    fn chat_reports_llm_failures_and_exits_1_without_the_key(db: &Db) -> TestResult {
        let server = TestServer::start(|_| {
            Response::new(
                401,
                r#"{"error":{"message":"Incorrect API key provided: sk-chat-secret"}}"#,
            )
        });
        let out = db.cli()
            .env("AGENTSTORE_LLM_API_KEY", "sk-chat-secret")
            .args([
                "chat",
                "--agent",
                "bot",
                "--llm",
                "openai",
                "--base-url",
                &server.base_url(),
            ])
            .write_stdin("one\ntwo\n")
            .assert()
            .code(1);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.contains("HTTP 401"), "{stderr}");
        assert!(stderr.contains("2 of 2 messages failed"), "{stderr}");
        assert!(!stderr.contains("sk-chat-secret"), "{stderr}");
        Ok(())
    }
}

engines! {
    fn a_bad_base_url_is_a_usage_error(db: &Db) -> TestResult {
        chat(
            db,
            &["--agent", "bot", "--llm", "openai", "--base-url", "ftp://x"],
            "hi\n",
        )
        .code(2)
        .stderr(predicates::str::contains(
            "must start with http:// or https://",
        ));
        Ok(())
    }
}

engines! {
    fn stats_shows_the_three_views(db: &Db) -> TestResult {
        chat(
            db,
            &["--agent", "bot", "--simulated-latency", "none"],
            "hello\nhello\n",
        )
        .success();
        chat(
            db,
            &["--agent", "other", "--simulated-latency", "none"],
            "hey\n",
        )
        .success();
        let all = db.json(&["stats"]);
        assert_eq!(all["memory_stats"].as_array().unwrap().len(), 2);
        assert_eq!(all["response_stats"][0]["agent"], "bot");
        assert_eq!(all["response_stats"][0]["exact"], 1);
        assert_eq!(all["response_stats"][0]["generated"], 1);
        assert_eq!(all["memory_stats"][0]["total_entries"], 4);
        assert_eq!(all["tool_stats"], serde_json::json!([]));
        let one = db.json(&["stats", "--agent", "other"]);
        assert_eq!(one["memory_stats"].as_array().unwrap().len(), 1);
        assert_eq!(one["memory_stats"][0]["agent"], "other");
        let text = db.cli().arg("stats").assert().success();
        let text = String::from_utf8_lossy(&text.get_output().stdout).into_owned();
        for view in [
            "memory_stats",
            "tool_stats",
            "response_stats",
            "target_achievement_rate",
        ] {
            assert!(text.contains(view), "{view}: {text}");
        }
        db.cli()
            .args(["stats", "--agent", "nobody"])
            .assert()
            .failure()
            .stderr(predicates::str::contains("nobody"));
        Ok(())
    }
}
