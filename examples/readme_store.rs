//! The README's first library snippet ("The library"), as a program CI builds and
//! `tests/integration/readme.rs` compares with the README, line for line, between the
//! two README markers.

// README begin
use agentstore::{
    ForgetTarget, FuzzyOptions, ListOrder, Prune, Role, SearchOptions, Store, StoreOptions,
};
use serde_json::json;
// README end

fn main() -> agentstore::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::env::set_current_dir(dir.path()).expect("cd");
    // README begin
    let store = Store::connect("sqlite:agent.db", StoreOptions::default())?; // creates if needed
    let agent = store.agent("assistant")?; // created on first use
    let memory = store.memory(&agent); // every handle is bound to its agent

    let id = memory.add("the user prefers metric units", 0.9)?; // retention applied
    memory.add_many(&[("hello", 0.3), ("how are you", 0.4)])?; // one transaction
    let stats = memory.stats()?; // O(1)
    let context = memory.context(2000)?; // text, included, truncated
    let recent = memory.list(ListOrder::Time, 20)?;
    let day = std::time::Duration::from_secs(86400);
    let report = memory.prune(Prune::OlderThan(day), true)?; // a dry run
    memory.add_as(Role::User, "my home address is 5 Elm Road", 0.5)?; // who said it
    let hits = memory.search("metric units", &SearchOptions::default())?; // BM25, best first
    let relevant = memory.context_for("which units?", 2000)?; // relevance to the query too
    memory.rate(id, 1.0)?; // a new importance, same entry
    let forgotten = memory.forget(&ForgetTarget::Matching("home address".into()), false)?;

    let tools = store.tool_cache(&agent); // the agent's scope
    tools.put(
        "weather",
        &json!({"city": "Oslo"}),
        &json!({"celsius": 3}),
        day,
    )?;
    let cached = tools.get("weather", &json!({"city": "Oslo"}))?; // key derived here

    let responses = store.response_cache(&agent);
    responses.put("what is the capital of France?", "Paris")?;
    let hit = responses.lookup("what is the capital of france?", FuzzyOptions::default())?;
    // README end
    assert!(id > 0 && stats.total_entries == 3 && context.included == 3);
    assert_eq!(hits[0].id, id);
    assert_eq!(relevant.entries[0].id, id);
    assert_eq!(forgotten.entries.len(), 1);
    assert_eq!((recent.len(), report.removed_entries), (3, 0));
    assert_eq!(cached, Some(json!({"celsius": 3})));
    assert_eq!(hit.map(|m| m.response), Some("Paris".to_string()));
    Ok(())
}
