"""Round trips of `agentstore mcp` over stdio from the official MCP Python SDK: the
time from spawning the server to its first answered `tools/list`, and `recall` and
`remember` at N entries (median and p95). The figures in README.md come from this.

    cargo build --release
    target/pyenv/bin/python benches/mcp/bench.py [--bin target/release/agentstore] [--entries 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from mcp import Client, StdioServerParameters

# A vocabulary like the workloads' (5,000 words of 3 to 10 letters, WORKLOADS.md's
# VOCAB), so a query word matches a realistic share of the entries.
_vocab_rng = random.Random(5000)
WORDS = [
    "".join(chr(97 + _vocab_rng.randrange(26)) for _ in range(3 + _vocab_rng.randrange(8)))
    for _ in range(5000)
]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/agentstore")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        # Retention that keeps every entry (no regular cleanup, a cap above N).
        flags = ["--cleanup-interval", "0", "--max-entries", str(2 * args.entries), "--max-memory-mb", "1000"]
        params = StdioServerParameters(command=args.bin, args=["--db", str(db), "mcp", "--agent", "bench", *flags])

        starts = []
        for _ in range(10):
            t0 = time.perf_counter()
            async with Client(params) as client:
                await client.list_tools()
                starts.append(time.perf_counter() - t0)

        async with Client(params) as client:
            rng = random.Random(1)
            # Fill through `remember` itself: N round trips.
            t0 = time.perf_counter()
            remember = []
            for i in range(args.entries):
                text = " ".join(rng.choice(WORDS) for _ in range(12))
                t = time.perf_counter()
                r = await client.call_tool("remember", {"content": f"{text} #{i}", "importance": 0.5})
                remember.append(time.perf_counter() - t)
                assert not r.is_error, r
            fill_s = time.perf_counter() - t0
            stats = (await client.call_tool("memory_stats", {})).structured_content
            recall = []
            for _ in range(args.calls):
                query = " ".join(rng.sample(WORDS, 2))
                t = time.perf_counter()
                r = await client.call_tool("recall", {"query": query, "limit": 10})
                recall.append(time.perf_counter() - t)
                assert not r.is_error, r
        late = remember[-args.calls:]
        print(json.dumps({
            "entries_at_end": stats["total_entries"],
            "spawn_to_tools_list_ms": {"median": statistics.median(starts) * 1e3, "p95": percentile(starts, 0.95) * 1e3},
            "remember_ms": {"median": statistics.median(late) * 1e3, "p95": percentile(late, 0.95) * 1e3, "over_last": len(late)},
            "recall_ms": {"median": statistics.median(recall) * 1e3, "p95": percentile(recall, 0.95) * 1e3, "calls": len(recall)},
            "fill_remembers_per_s": args.entries / fill_s,
        }, indent=2))


asyncio.run(main())
