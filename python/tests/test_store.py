"""The Python API over a real SQLite file."""

import asyncio
import subprocess
import sys
import threading
import time

import pytest

import agentstore
from agentstore import Busy, InvalidArgument, NotFound, Store


def test_memory_round_trips_unicode_and_nul_and_survives_a_reopen(db):
    text = "naïve café \x00 日本語 🚀"
    with Store(db) as store:
        m = store.memory("bot")
        first = m.add(text, importance=0.9, role="user")
        ids = m.add_many([("hello", 0.3), ("how are you", 0.4, "assistant"), {"content": "a note"}])
        assert ids == [first + 1, first + 2, first + 3]
    with Store(db, create=False) as store:
        m = store.memory("bot")
        entries = m.list(limit=10, order="time")
        assert [e["content"] for e in entries][-1] == text
        assert entries[-1]["role"] == "user"
        assert set(entries[0]) == {"id", "role", "content", "importance", "created_at", "size_bytes"}
        assert m.get(first)["content"] == text
        stats = m.stats()
        assert stats["total_entries"] == 4
        assert m.context(max_chars=2000)["included"] == 4
        hits = m.search("cafe")
        assert [h["id"] for h in hits] == [first]
        assert "[café]" in hits[0]["snippet"]


def test_rate_forget_and_prune(db):
    with Store(db) as store:
        m = store.memory("bot")
        a = m.add("my address is 5 Elm Road", 0.5)
        b = m.add("small talk", 0.1)
        assert m.rate(a, 0.8)["importance"] == 0.8
        dry = m.forget(matching="elm road", dry_run=True)
        assert [e["id"] for e in dry["entries"]] == [a] and dry["dry_run"]
        assert m.forget(matching="elm road")["scrubbed"] is True
        assert m.get(a) is None
        report = m.prune(min_importance=0.5, dry_run=True)
        assert report["removed_entries"] == 1 and report["dry_run"]
        assert m.prune(min_importance=0.5)["removed_entries"] == 1
        assert m.get(b) is None


def test_errors_are_typed_with_the_cli_messages(db):
    with Store(db) as store:
        m = store.memory("bot")
        with pytest.raises(InvalidArgument, match="importance must be a finite number between 0 and 1, got 7"):
            m.add("x", 7)
        with pytest.raises(InvalidArgument, match="unknown role"):
            m.add("x", 0.5, role="wizard")
        with pytest.raises(InvalidArgument, match="the query is empty"):
            m.search("  ")
        with pytest.raises(InvalidArgument):
            m.prune(keep_fraction=0.5, min_importance=0.2)
        with pytest.raises(InvalidArgument):
            m.forget([99])
        assert issubclass(InvalidArgument, agentstore.AgentstoreError)
    with pytest.raises(NotFound):
        Store(db + ".missing", create=False)


def test_tool_cache_keys_are_canonical_and_never_cached_tools_run(db):
    with Store(db) as store:
        t = store.tool_cache("bot")
        assert t.put("weather", {"city": "Oslo", "unit": "c"}, {"celsius": 3}, ttl=60)
        assert t.get("weather", {"unit": "c", "city": "Oslo"}) == {"celsius": 3}
        assert t.get("weather", {"city": "Bergen"}) is None
        assert t.put("current_time", {}, "noon") is False
        assert t.get("current_time", {}) is None
        assert t.purge("weather")["removed"] == 1

        calls = []

        @store.cached_tool("bot", ttl=60)
        def lookup(city, unit="c"):
            calls.append(city)
            return {"city": city, "unit": unit}

        assert lookup("Oslo") == lookup("Oslo") == {"city": "Oslo", "unit": "c"}
        assert calls == ["Oslo"]

        @store.cached_tool("bot", ttl=60)
        async def alookup(city):
            calls.append("async " + city)
            return [city]

        assert asyncio.run(alookup("Rome")) == ["Rome"]
        assert asyncio.run(alookup("Rome")) == ["Rome"]
        assert calls == ["Oslo", "async Rome"]

        @store.cached_tool("bot", name="random_generator")
        def roll():
            calls.append("roll")
            return 4

        roll(), roll()
        assert calls.count("roll") == 2


def test_responses_exact_and_fuzzy(db):
    with Store(db) as store:
        r = store.responses("bot")
        r.put("what is the capital of France?", "Paris")
        assert r.lookup("what is the capital of France?")["response"] == "Paris"
        assert r.lookup("what is the capital of france") is None
        hit = r.lookup("what is the capital of france?", fuzzy=True)
        assert hit["kind"] == "fuzzy" and hit["response"] == "Paris"
        assert len(r) == 1
        assert r.stats() == {"no_data": True}
        assert asyncio.run(r.alookup("what is the capital of France?"))["response"] == "Paris"


def test_two_processes_share_one_file(db):
    with Store(db) as store:
        store.memory("bot").add("written by the parent", 0.5)
    code = (
        "import sys, agentstore\n"
        "s = agentstore.Store(sys.argv[1])\n"
        "m = s.memory('bot')\n"
        "assert m.search('parent')[0]['content'] == 'written by the parent'\n"
        "m.add('written by the child', 0.5)\n"
    )
    subprocess.run([sys.executable, "-c", code, db], check=True)
    with Store(db) as store:
        assert store.memory("bot").search("child")[0]["content"] == "written by the child"


def test_threads_run_while_another_waits_on_a_busy_lock(db):
    """The GIL is released: a Python thread keeps counting while another thread's call
    waits for a lock that a second process holds."""
    with Store(db) as store:
        store.memory("bot").add("seed", 0.5)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('BEGIN IMMEDIATE')\n"
         "print('locked', flush=True)\n"
         "time.sleep(1.5)\n"
         "c.execute('COMMIT')\n", db],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(1)
            time.sleep(0.005)

    with Store(db, busy_timeout=0.3) as store:
        counter = threading.Thread(target=count)
        counter.start()
        start = time.monotonic()
        with pytest.raises(Busy, match="database is locked"):
            store.memory("bot").add("blocked", 0.5)
        waited = time.monotonic() - start
        done.set()
        counter.join()
    holder.wait()
    assert waited >= 0.25
    assert len(ticks) >= 10, "the counting thread ran while the store call waited"

    with Store(db) as store:
        m = store.memory("bot")
        errors = []

        def add(i):
            try:
                for k in range(20):
                    m.add(f"thread {i} entry {k}", 0.5)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        [bot] = [a for a in store.agents() if a["name"] == "bot"]
        assert bot["message_count"] == 161


def test_async_methods(db):
    async def main():
        with Store(db) as store:
            m = store.memory("bot")
            ids = await asyncio.gather(*(m.aadd(f"entry {i}", 0.5) for i in range(10)))
            assert sorted(ids) == list(range(1, 11))
            assert (await m.acontext(2000))["included"] == 10
            assert len(await m.asearch("entry", limit=3)) == 3

    asyncio.run(main())
