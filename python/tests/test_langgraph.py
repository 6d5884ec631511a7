"""AgentstoreNodeCache as a LangGraph node cache: a cached node runs once."""

import subprocess
import sys
import time

from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy
from typing_extensions import TypedDict

from agentstore.langgraph import AgentstoreNodeCache

GRAPH = '''
import sys
from typing_extensions import TypedDict
from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy
from agentstore.langgraph import AgentstoreNodeCache

class State(TypedDict):
    x: int
    y: int

def build(db, counter, ttl=None):
    def slow(state):
        with open(counter, "a") as f:
            f.write("run\\n")
        return {"y": state["x"] * 2}
    b = StateGraph(State)
    b.add_node("slow", slow, cache_policy=CachePolicy(ttl=ttl))
    b.add_edge(START, "slow")
    b.add_edge("slow", END)
    return b.compile(cache=AgentstoreNodeCache(db))
'''


def runs(counter):
    try:
        with open(counter) as f:
            return len(f.readlines())
    except FileNotFoundError:
        return 0


def load(tmp_path):
    path = tmp_path / "graph_def.py"
    path.write_text(GRAPH)
    sys.path.insert(0, str(tmp_path))
    import graph_def

    return graph_def, path


def test_a_cached_node_runs_once_across_invocations_and_processes(db, tmp_path):
    graph_def, path = load(tmp_path)
    counter = str(tmp_path / "runs.txt")
    graph = graph_def.build(db, counter)
    assert graph.invoke({"x": 21})["y"] == 42
    assert graph.invoke({"x": 21})["y"] == 42
    assert runs(counter) == 1
    assert graph.invoke({"x": 5})["y"] == 10
    assert runs(counter) == 2
    # The node's cache namespace is its module and name, so the other process imports
    # the same module.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import graph_def\n"
        "print(graph_def.build(sys.argv[2], sys.argv[3]).invoke({'x': 21})['y'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path.parent), db, counter],
        check=True, capture_output=True, text=True,
    )
    assert out.stdout.strip() == "42"
    assert runs(counter) == 2, "the other process was answered from the cache"
    # Again after clear.
    AgentstoreNodeCache(db).clear()
    assert graph.invoke({"x": 21})["y"] == 42
    assert runs(counter) == 3


def test_a_short_ttl_runs_the_node_again(db, tmp_path):
    graph_def, _ = load(tmp_path)
    counter = str(tmp_path / "ttl.txt")
    graph = graph_def.build(db, counter, ttl=1)
    graph.invoke({"x": 1})
    graph.invoke({"x": 1})
    assert runs(counter) == 1
    time.sleep(1.2)
    graph.invoke({"x": 1})
    assert runs(counter) == 2


def test_clear_by_namespace(db):
    cache = AgentstoreNodeCache(db)
    cache.set({(("a",), "k"): ({"v": 1}, None), (("b",), "k"): ([1, "two"], 60)})
    assert cache.get([(("a",), "k"), (("b",), "k"), (("c",), "k")]) == {
        (("a",), "k"): {"v": 1},
        (("b",), "k"): [1, "two"],
    }
    cache.clear([("a",)])
    assert cache.get([(("a",), "k"), (("b",), "k")]) == {(("b",), "k"): [1, "two"]}
