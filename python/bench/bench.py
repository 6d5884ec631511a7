"""The Python benchmark (issue 17): LangChain's and LangGraph's caches on agentstore
against the ones those projects ship, on WORKLOADS.md's W7 data (10,000 cached
prompt/response pairs of seed 701, new pairs of seed 705: the generator of
benches/workloads/data.rs, ported), hits and misses-plus-stores alternated with the
peer's in one loop, medians in microseconds.

    python python/bench/bench.py            # needs langchain-community, diskcache,
                                            # langgraph-checkpoint-sqlite (optional)
"""

import json
import os
import statistics
import sys
import tempfile
import time

MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        return self.next() % n


def vocab():
    r, words, seen = SplitMix64(1), [], set()
    while len(words) < 5000:
        n = 3 + r.below(8)
        w = "".join(chr(ord("a") + r.below(26)) for _ in range(n))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def content(r, v):
    out = ""
    while len(out) < 200:
        w = v[r.below(len(v))]
        out = w if not out else out + " " + w
    return out


def pairs(seed, n, v):
    r = SplitMix64(seed)
    return [(content(r, v), content(r, v)) for _ in range(n)]


def tool_params(seed, n, v):
    """W5's tool params (seed 501): {"query": content, "top_k": 1 + below(20), "lang": "en"}."""
    r = SplitMix64(seed)
    out = []
    for _ in range(n):
        q = content(r, v)
        out.append({"query": q, "top_k": 1 + r.below(20), "lang": "en"})
    return out


def timed(f):
    t = time.perf_counter()
    f()
    return (time.perf_counter() - t) * 1e6


def median(xs):
    return round(statistics.median(xs), 2)


def main():
    from langchain_core.outputs import Generation

    from agentstore import Store
    from agentstore.langchain import AgentstoreCache

    v = vocab()
    cached, fresh = pairs(701, 10_000, v), pairs(705, 2_000, v)
    llm = "model=bench temperature=0"
    tmp = tempfile.mkdtemp()
    out = {"N": len(cached)}

    ours = AgentstoreCache(os.path.join(tmp, "ours.db"))
    peers = {}
    try:
        from langchain_community.cache import SQLiteCache

        peers["langchain_community.SQLiteCache"] = SQLiteCache(database_path=os.path.join(tmp, "lc.db"))
    except ImportError as e:
        print(f"skipping SQLiteCache: {e}", file=sys.stderr)
    for p, r in cached:
        g = [Generation(text=r)]
        ours.update(p, llm, g)
        for peer in peers.values():
            peer.update(p, llm, g)

    hits = {"agentstore": []} | {k: [] for k in peers}
    for i in range(3000):
        p = cached[(i * 7919) % len(cached)][0]
        hits["agentstore"].append(timed(lambda: ours.lookup(p, llm)))
        for k, peer in peers.items():
            hits[k].append(timed(lambda: peer.lookup(p, llm)))
    stores = {"agentstore": []} | {k: [] for k in peers}
    for p, r in fresh:
        g = [Generation(text=r)]
        stores["agentstore"].append(timed(lambda: (ours.lookup(p, llm), ours.update(p, llm, g))))
        for k, peer in peers.items():
            stores[k].append(timed(lambda: (peer.lookup(p, llm), peer.update(p, llm, g))))
    out["langchain_hit_us"] = {k: median(x) for k, x in hits.items()}
    out["langchain_miss_and_store_us"] = {k: median(x) for k, x in stores.items()}

    # The native exact lookup alone, under the adapter: the Python layer's overhead.
    store = Store(os.path.join(tmp, "native.db"))
    native = store.responses("bench")._r
    for p, r in cached[:2000]:
        native.put(p, r)
    out["native_exact_lookup_us"] = median([timed(lambda: native.lookup_exact(p)) for p, _ in cached[:2000]])

    # LangGraph's node cache on W5's data: 10,000 entries of one namespace, keyed by
    # W5's tool params (as LangGraph keys a node by its input), W7's responses as values.
    from agentstore.langgraph import AgentstoreNodeCache

    caches = {"agentstore": AgentstoreNodeCache(os.path.join(tmp, "node.db"))}
    try:
        from langgraph.cache.sqlite import SqliteCache

        caches["langgraph.SqliteCache"] = SqliteCache(path=os.path.join(tmp, "lg.db"))
    except ImportError as e:
        print(f"skipping langgraph's SqliteCache: {e}", file=sys.stderr)
    ns = ("__pregel_ns_writes", "graph_def.build.<locals>.slow")
    params = tool_params(501, len(cached), v)
    values = {
        (ns, json.dumps(p, sort_keys=True)): ({"y": c[1]}, 600) for p, c in zip(params, cached)
    }
    for c in caches.values():
        c.set(values)
    node = {k: [] for k in caches}
    keys = list(values)
    for i in range(3000):
        key = [keys[(i * 7919) % len(keys)]]
        for k, c in caches.items():
            node[k].append(timed(lambda: c.get(key)))
    out["langgraph_hit_us"] = {k: median(x) for k, x in node.items()}
    try:
        import diskcache

        dc = diskcache.Cache(os.path.join(tmp, "dc"))
        for (_, key), (value, _) in values.items():
            dc.set(key, value, expire=600)
        out["langgraph_hit_us"]["diskcache (raw get, for scale)"] = median(
            [timed(lambda: dc.get(keys[(i * 7919) % len(keys)][1])) for i in range(3000)]
        )
    except ImportError:
        pass
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
