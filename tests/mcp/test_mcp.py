"""`agentstore mcp` driven by the official MCP Python SDK (`mcp` from PyPI), a client
that is not ours: over stdio (the 2026 per-request protocol and the older initialize
handshake) and over the streamable HTTP transport, with the CLI on the same file.

Run by tests/integration/mcp.rs (`cargo test`), which passes the binary it built in
AGENTSTORE_BIN; or by hand:
AGENTSTORE_BIN=target/debug/agentstore target/pyenv/bin/python -m pytest tests/mcp
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

BIN = os.environ.get("AGENTSTORE_BIN", "target/debug/agentstore")

TOOLS = {
    # name: (read-only, destructive, idempotent)
    "remember": (False, False, False),
    "recall": (True, False, True),
    "context": (True, False, True),
    "list_memories": (True, False, True),
    "get_memory": (True, False, True),
    "rate_memory": (False, False, True),
    "forget": (False, True, True),
    "memory_stats": (True, False, True),
}


def cli(db: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN, "--db", str(db), *args], capture_output=True, text=True, timeout=60
    )


def cli_json(db: Path, *args: str):
    done = cli(db, "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def stdio(db: Path, *args: str) -> StdioServerParameters:
    return StdioServerParameters(command=BIN, args=["--db", str(db), "mcp", *args])


@asynccontextmanager
async def connect(db: Path, *args: str, mode: str = "auto"):
    async with Client(stdio(db, *args), mode=mode, read_timeout_seconds=60) as client:
        yield client


async def call(client: Client, tool: str, arguments: dict):
    """A successful call's structured content."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    # The text content is the same JSON, for clients that ignore structured content.
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


async def error(client: Client, tool: str, arguments: dict) -> str:
    """A failed call's one-line message (a tool error, not a protocol error)."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result
    assert result.structured_content is None
    (text,) = result.content
    assert "\n" not in text.text and text.text
    return text.text


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "agent.db"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_tools_are_listed_with_schemas_and_hints(db: Path, mode: str):
    async def main():
        async with connect(db, "--agent", "bot", mode=mode) as client:
            assert client.server_info.name == "agentstore"
            assert client.server_capabilities.tools is not None
            assert client.server_capabilities.resources is not None
            listed = {t.name: t for t in (await client.list_tools()).tools}
            assert set(listed) == set(TOOLS)
            for name, (read_only, destructive, idempotent) in TOOLS.items():
                tool = listed[name]
                assert tool.title and tool.description, name
                hints = tool.annotations
                assert hints.title == tool.title
                assert hints.read_only_hint is read_only, name
                assert hints.destructive_hint is destructive, name
                assert hints.idempotent_hint is idempotent, name
                assert hints.open_world_hint is False, name
                schema = tool.input_schema
                assert schema["type"] == "object"
                assert schema["additionalProperties"] is False
                # The agent is fixed by the server: no tool takes one.
                assert "agent" not in schema.get("properties", {}), name
                assert tool.output_schema["type"] == "object", name
            remember = listed["remember"].input_schema
            assert remember["required"] == ["content"]
            assert remember["properties"]["importance"]["maximum"] == 1.0
            assert listed["recall"].input_schema["required"] == ["query"]
            assert listed["get_memory"].input_schema["required"] == ["id"]
            assert set(listed["rate_memory"].input_schema["required"]) == {"id", "importance"}
            assert set(listed["forget"].input_schema["properties"]) == {"ids", "matching", "dry_run"}
            recall_out = listed["recall"].output_schema
            assert "matches" in recall_out["properties"]

    asyncio.run(main())


def test_every_tool_round_trips(db: Path):
    async def main():
        async with connect(db, "--agent", "bot") as client:
            first = await call(
                client,
                "remember",
                {"content": "the user prefers metric units", "importance": 0.9},
            )
            assert first == {"id": 1, "agent": "bot"}
            second = await call(
                client,
                "remember",
                {"content": "the user asked about rate limits", "role": "user"},
            )
            assert second["id"] == 2
            await call(client, "remember", {"content": "Zürich is the user's city", "importance": 0.2})

            recalled = await call(client, "recall", {"query": "metric units"})
            (match,) = recalled["matches"]
            assert match["id"] == 1 and match["content"] == "the user prefers metric units"
            assert match["role"] == "note" and match["importance"] == 0.9
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", match["created_at"])
            assert isinstance(match["score"], float)
            assert "[metric]" in match["snippet"]
            # Accents and case are ignored; a role filter applies.
            assert [m["id"] for m in (await call(client, "recall", {"query": "zurich"}))["matches"]] == [3]
            by_role = await call(client, "recall", {"query": "user", "role": "user"})
            assert [m["id"] for m in by_role["matches"]] == [2]
            assert len((await call(client, "recall", {"query": "user", "limit": 1}))["matches"]) == 1

            context = await call(client, "context", {"query": "which units?", "max_chars": 2000})
            assert context["included"] == 3 and context["truncated"] == 0
            assert context["text"].startswith("What you remember")
            assert "note: the user prefers metric units" in context["text"]
            assert "user: the user asked about rate limits" in context["text"]
            assert sorted(context["ids"]) == [1, 2, 3]
            small = await call(client, "context", {"max_chars": 40})
            assert small["included"] < 3 and small["truncated"] > 0

            listed = await call(client, "list_memories", {})
            assert [e["id"] for e in listed["entries"]] == [3, 2, 1]
            by_importance = await call(client, "list_memories", {"order": "importance", "limit": 2})
            assert [e["id"] for e in by_importance["entries"]] == [1, 2]

            got = await call(client, "get_memory", {"id": 2})
            assert got["content"] == "the user asked about rate limits" and got["role"] == "user"
            assert got["size_bytes"] == len("the user asked about rate limits")

            rated = await call(client, "rate_memory", {"id": 2, "importance": 0.1})
            assert rated["importance"] == 0.1 and rated["content"] == got["content"]
            assert rated["created_at"] == got["created_at"]

            stats = await call(client, "memory_stats", {})
            assert stats["total_entries"] == 3
            assert abs(stats["avg_importance_score"] - (0.9 + 0.1 + 0.2) / 3) < 1e-9
            assert set(stats) == {
                "total_entries",
                "total_memory_mb",
                "avg_importance_score",
                "memory_utilization_pct",
                "oldest_entry_age_hours",
                "memory_span_hours",
            }

            # forget, dry: exactly what would go, and nothing goes.
            dry = await call(client, "forget", {"matching": "user", "dry_run": True})
            assert dry["dry_run"] is True and dry["scrubbed"] is False
            assert sorted(e["id"] for e in dry["entries"]) == [1, 2, 3] and dry["count"] == 3
            assert (await call(client, "memory_stats", {}))["total_entries"] == 3
            # forget by ids, for real.
            gone = await call(client, "forget", {"ids": [2]})
            assert gone["dry_run"] is False and gone["count"] == 1
            assert gone["entries"][0]["content"] == "the user asked about rate limits"
            assert "no memory entry 2" in await error(client, "get_memory", {"id": 2})
            assert (await call(client, "recall", {"query": "rate limits"}))["matches"] == []
            # forget by query.
            gone = await call(client, "forget", {"matching": "metric"})
            assert [e["id"] for e in gone["entries"]] == [1]
            assert [e["id"] for e in (await call(client, "list_memories", {}))["entries"]] == [3]

    asyncio.run(main())
    # What MCP forgot is gone for the CLI too.
    assert [e["id"] for e in cli_json(db, "memory", "list", "--agent", "bot")] == [3]


def test_mistakes_are_tool_errors_and_the_server_goes_on(db: Path):
    async def main():
        async with connect(db, "--agent", "bot") as client:
            await call(client, "remember", {"content": "one entry"})
            assert "between 0 and 1" in await error(client, "remember", {"content": "x", "importance": 7})
            assert "between 0 and 1" in await error(client, "rate_memory", {"id": 1, "importance": -1})
            assert "query is empty" in await error(client, "recall", {"query": ""})
            assert "query is empty" in await error(client, "recall", {"query": "  ?! "})
            assert "no memory entry 99" in await error(client, "get_memory", {"id": 99})
            assert "no memory entry 99" in await error(client, "rate_memory", {"id": 99, "importance": 0.5})
            assert "99" in await error(client, "forget", {"ids": [1, 99]})
            too_big = "x" * ((1 << 20) + 1)
            assert "limit" in await error(client, "remember", {"content": too_big})
            assert "missing field `content`" in await error(client, "remember", {})
            assert "expected a string" in await error(client, "remember", {"content": 5})
            assert "unknown field `colour`" in await error(client, "recall", {"query": "x", "colour": 1})
            assert "limit must be between 1 and 100" in await error(client, "recall", {"query": "x", "limit": 0})
            assert "ids" in await error(client, "forget", {})
            assert "not both" in await error(client, "forget", {"ids": [1], "matching": "one"})
            assert "unknown variant" in await error(client, "list_memories", {"order": "random"})
            assert "serves agent \"bot\" only" in await error(client, "memory_stats", {"agent": "other"})
            # An unknown tool is a protocol error (the request is unroutable).
            with pytest.raises(MCPError):
                await client.call_tool("no_such_tool", {})
            # Nothing of the above was written, and the server still answers.
            assert (await call(client, "memory_stats", {}))["total_entries"] == 1

    asyncio.run(main())
    assert len(cli_json(db, "memory", "list", "--agent", "bot")) == 1


def raw_exchange(db: Path, lines: list[str]) -> list[dict]:
    """JSON-RPC lines written to a server's stdin; the replies on its stdout."""
    done = subprocess.run(
        [BIN, "--db", str(db), "mcp", "--agent", "bot"],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Nothing but protocol messages on stdout.
    replies = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    for reply in replies:
        assert reply["jsonrpc"] == "2.0"
    return replies


def test_malformed_json_rpc_gets_protocol_errors(db: Path):
    init = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        }
    )
    initialized = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
    replies = raw_exchange(
        db,
        [
            init,
            initialized,
            '{"jsonrpc": "2.0", "id": 2, "method": "no/such/method"}',
            '{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": 5}}',
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 4,
                    "method": "tools/call",
                    "params": {"name": "memory_stats", "arguments": {}},
                }
            ),
        ],
    )
    by_id = {r.get("id"): r for r in replies}
    assert by_id[1]["result"]["serverInfo"]["name"] == "agentstore"
    assert by_id[2]["error"]["code"] == -32601
    # rmcp reads a tools/call it cannot parse as an unknown request.
    assert by_id[3]["error"]["code"] in (-32602, -32600, -32601)
    assert by_id[4]["result"]["structuredContent"] == {"total_entries": 0, "total_memory_mb": 0.0}
    # A line that is not JSON at all: the server answers with a parse error or
    # drops it, and goes on answering.
    tools_list = json.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/list"})
    replies = raw_exchange(db, [init, initialized, "{not json", tools_list])
    by_id = {r.get("id"): r for r in replies}
    assert len(by_id[5]["result"]["tools"]) == len(TOOLS)
    for reply in replies:
        if "error" in reply and reply.get("id") is None:
            assert reply["error"]["code"] == -32700


def test_any_agent_tools_take_an_agent(db: Path):
    async def main():
        async with connect(db, "--any-agent") as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            for tool in tools.values():
                assert "agent" in tool.input_schema["properties"], tool.name
                assert tool.input_schema["required"][0] == "agent", tool.name
            assert "`agent` is required" in await error(client, "remember", {"content": "x"})
            await call(client, "remember", {"agent": "a", "content": "apples for a"})
            await call(client, "remember", {"agent": "b", "content": "apples for b"})
            hits = await call(client, "recall", {"agent": "a", "query": "apples"})
            assert [m["content"] for m in hits["matches"]] == ["apples for a"]
            assert "no agent" in (await error(client, "recall", {"agent": "c", "query": "apples"})).lower()
            resources = (await client.list_resources()).resources
            assert {str(r.uri) for r in resources} == {
                "agentstore://agents/a/stats",
                "agentstore://agents/b/stats",
            }

    asyncio.run(main())


def test_resources_stats_and_entries(db: Path):
    async def main():
        async with connect(db, "--agent", "my bot") as client:
            await call(client, "remember", {"content": "a resource entry"})
            (stats,) = (await client.list_resources()).resources
            assert str(stats.uri) == "agentstore://agents/my%20bot/stats"
            read = await client.read_resource(str(stats.uri))
            assert json.loads(read.contents[0].text)["total_entries"] == 1
            (template,) = (await client.list_resource_templates()).resource_templates
            assert template.uri_template == "agentstore://agents/{agent}/memories/{id}"
            entry = await client.read_resource("agentstore://agents/my%20bot/memories/1")
            assert json.loads(entry.contents[0].text)["content"] == "a resource entry"
            for missing in [
                "agentstore://agents/my%20bot/memories/2",
                "agentstore://agents/other/stats",
                "file:///etc/passwd",
            ]:
                with pytest.raises(MCPError):
                    await client.read_resource(missing)

    asyncio.run(main())


def test_two_clients_and_the_cli_share_one_file(db: Path):
    assert cli(db, "memory", "add", "--agent", "bot", "added by the CLI about penguins").returncode == 0

    async def main():
        async with connect(db, "--agent", "bot") as one, connect(db, "--agent", "bot") as two:
            found = await call(one, "recall", {"query": "penguins"})
            assert [m["content"] for m in found["matches"]] == ["added by the CLI about penguins"]
            new = await call(one, "remember", {"content": "remembered through client one about otters"})
            # The second client, open at the same time, sees it at once.
            seen = await call(two, "recall", {"query": "otters"})
            assert [m["id"] for m in seen["matches"]] == [new["id"]]
            # Writes from both, interleaved, all land.
            await asyncio.gather(
                *(call(c, "remember", {"content": f"note {i}"}) for i, c in enumerate([one, two] * 10))
            )
            assert (await call(two, "memory_stats", {}))["total_entries"] == 22
            await call(two, "forget", {"matching": "penguins"})
            assert (await call(one, "recall", {"query": "penguins"}))["matches"] == []

    asyncio.run(main())
    listed = cli_json(db, "memory", "list", "--agent", "bot", "--limit", "100")
    assert len(listed) == 21
    assert not any("penguins" in e["content"] for e in listed)
    assert cli(db, "check").returncode == 0


class HttpServer:
    """`agentstore mcp --http 127.0.0.1:0` in the background, stdin closed."""

    def __init__(self, db: Path, *args: str):
        self.process = subprocess.Popen(
            [BIN, "--db", str(db), "mcp", "--agent", "bot", "--http", "127.0.0.1:0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = None
        self.token = None
        self.stderr = []
        deadline = time.monotonic() + 30
        want_token = "--token-file" not in args
        while self.url is None or (want_token and self.token is None):
            assert time.monotonic() < deadline, "no address on stderr: " + "".join(self.stderr)
            line = self.process.stderr.readline()
            assert line, "the server exited: " + "".join(self.stderr)
            self.stderr.append(line)
            if m := re.search(r"over HTTP at (http://\S+/mcp)", line):
                self.url = m.group(1)
            if m := re.search(r"bearer token: (\S+)", line):
                self.token = m.group(1)

    def stop(self) -> str:
        self.process.terminate()
        out, err = self.process.communicate(timeout=30)
        assert out == "", "stdout carries protocol messages only"
        return "".join(self.stderr) + err


@asynccontextmanager
async def http_client(url: str, token: str | None, **headers):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with create_mcp_http_client(headers=headers) as http:
        async with Client(streamable_http_client(url, http_client=http), read_timeout_seconds=60) as client:
            yield client


def test_http_needs_the_token_and_a_loopback_origin(db: Path, tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text("a-token-of-some-length-1234\n")
    server = HttpServer(db, "--token-file", str(token_file))
    try:
        assert server.token is None, "a token from a file is never printed"
        token = "a-token-of-some-length-1234"
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "remember", "arguments": {"content": "should not land"}},
        }
        with httpx2.Client() as raw:
            headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
            for auth in [None, "Bearer wrong-token-wrong-token", f"Basic {token}", token]:
                h = dict(headers)
                if auth:
                    h["Authorization"] = auth
                response = raw.post(server.url, json=init, headers=h)
                assert response.status_code == 401, (auth, response.status_code)
                assert response.headers["www-authenticate"].startswith("Bearer")
            # A browser page on another site (DNS rebinding): refused.
            response = raw.post(
                server.url,
                json=init,
                headers={**headers, "Authorization": f"Bearer {token}", "Origin": "http://evil.example"},
            )
            assert response.status_code == 403
            assert raw.get(server.url.replace("/mcp", "/other"), headers={"Authorization": f"Bearer {token}"}).status_code == 404

        async def main():
            async with http_client(server.url, token) as client:
                assert {t.name for t in (await client.list_tools()).tools} == set(TOOLS)
                await call(client, "remember", {"content": "over http about herons"})
                hits = await call(client, "recall", {"query": "herons"})
                assert [m["content"] for m in hits["matches"]] == ["over http about herons"]
                assert "between 0 and 1" in await error(client, "remember", {"content": "x", "importance": 7})
            async with http_client(server.url, token, Origin="http://localhost:5173") as client:
                assert (await call(client, "memory_stats", {}))["total_entries"] == 1

        asyncio.run(main())
    finally:
        log = server.stop()
    assert "refused a request" in log
    # Only the authorised remember landed.
    assert [e["content"] for e in cli_json(db, "memory", "list", "--agent", "bot")] == ["over http about herons"]


def test_http_generates_and_prints_a_token(db: Path):
    server = HttpServer(db)
    try:
        assert server.token and len(server.token) == 64

        async def main():
            async with http_client(server.url, server.token) as client:
                await call(client, "remember", {"content": "with a generated token"})
            with pytest.raises(Exception):
                async with http_client(server.url, None) as client:
                    await client.list_tools()

        asyncio.run(main())
    finally:
        server.stop()
    assert len(cli_json(db, "memory", "list", "--agent", "bot")) == 1


def test_bad_flags_fail_clearly(db: Path, tmp_path: Path):
    done = cli(db, "mcp")
    assert done.returncode == 2 and "--agent" in done.stderr
    short = tmp_path / "short"
    short.write_text("abc")
    done = cli(db, "mcp", "--agent", "bot", "--http", "127.0.0.1:0", "--token-file", str(short))
    assert done.returncode == 1 and "at least 16 characters" in done.stderr
    done = cli(db, "mcp", "--agent", "bot", "--http", "nowhere")
    assert done.returncode == 2 and "not an address" in done.stderr
    done = cli(db, "mcp", "--agent", "bot", "--token-file", str(short))
    assert done.returncode == 2


def test_retention_flags_are_stored_with_the_agent(db: Path):
    async def main():
        args = ("--agent", "bot", "--cleanup-interval", "0", "--max-entries", "5")
        async with connect(db, *args) as client:
            for i in range(7):
                await call(client, "remember", {"content": f"entry {i}"})
            # The cap keeps the 5 newest; no regular cleanup ran.
            listed = await call(client, "list_memories", {})
            assert [e["content"] for e in listed["entries"]] == [f"entry {i}" for i in range(6, 1, -1)]

    asyncio.run(main())
    exported = cli(db, "export", "--agent", "bot").stdout.splitlines()
    settings = json.loads(exported[1])["settings"]
    assert settings["max_entries"] == 5 and settings["cleanup_interval"] == 0
    done = cli(db, "mcp", "--agent", "bot", "--max-memory-mb", "-1")
    assert done.returncode == 2 and "max_memory_mb" in done.stderr
    done = cli(db, "mcp", "--any-agent", "--max-entries", "5")
    assert done.returncode == 2


def test_the_memory_can_live_on_postgres(tmp_path: Path):
    """`--db postgres://...`: the same tools on a server (the Rust side passes a URL
    of a throwaway cluster whenever one can be had; without one there is nothing to
    test here)."""
    url = os.environ.get("AGENTSTORE_MCP_POSTGRES")
    if not url:
        return

    async def main():
        params = StdioServerParameters(command=BIN, args=["--db", url, "mcp", "--agent", "bot"])
        async with Client(params, read_timeout_seconds=60) as one, Client(params, read_timeout_seconds=60) as two:
            new = await call(one, "remember", {"content": "kept on the server about walruses", "importance": 0.8})
            seen = await call(two, "recall", {"query": "walruses"})
            assert [m["id"] for m in seen["matches"]] == [new["id"]]
            assert "between 0 and 1" in await error(two, "remember", {"content": "x", "importance": 7})
            gone = await call(two, "forget", {"matching": "walruses"})
            assert gone["count"] == 1
            assert (await call(one, "recall", {"query": "walruses"}))["matches"] == []

    asyncio.run(main())
    assert cli_json(url, "memory", "list", "--agent", "bot") == []
