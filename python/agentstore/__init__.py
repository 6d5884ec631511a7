"""agentstore for Python: a long-lived LLM agent's state (memory, tool cache, response
cache) in one SQLite file, shared by threads and processes, surviving restarts.

    from agentstore import Store
    with Store("agent.db") as store:
        memory = store.memory("assistant")
        memory.add("the user prefers metric units", importance=0.9)
        print(memory.search("units"))

Results are plain dicts and lists with the keys of the CLI's ``--json``. Every call
releases the GIL; the ``a``-prefixed methods (``aadd``, ``acontext``, ...) run the
same call in a worker thread for asyncio code. Errors are ``AgentstoreError`` and its
subclasses ``InvalidArgument``, ``NotFound``, ``Busy`` and ``Damaged``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from . import _native
from ._native import AgentstoreError, Busy, Damaged, InvalidArgument, NotFound

__all__ = [
    "AgentstoreError",
    "Busy",
    "Damaged",
    "InvalidArgument",
    "Memory",
    "NEVER_CACHED",
    "NotFound",
    "Responses",
    "Store",
    "ToolCache",
]

#: Tool names never cached, whatever a decorator says (the original design's list).
NEVER_CACHED: Tuple[str, ...] = tuple(_native.NEVER_CACHED)


def _canonical(value: Any) -> str:
    """JSON text of ``value`` (keys sorted, so equal arguments give one key)."""
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"not JSON-serialisable: {e}") from None


class Memory:
    """One agent's memory entries (see the README's Memory semantics and Recall)."""

    def __init__(self, native: Any) -> None:
        self._m = native

    def add(self, content: str, importance: float = 0.5, role: str = "note") -> int:
        """Adds an entry with the agent's retention; returns its id."""
        return self._m.add(content, importance, role)

    def add_many(self, items: Iterable[Union[Tuple[str, float], Tuple[str, float, str], Dict[str, Any]]]) -> List[int]:
        """Adds ``(content, importance[, role])`` tuples or dicts in one transaction."""
        rows = []
        for item in items:
            if isinstance(item, dict):
                rows.append((item["content"], float(item.get("importance", 0.5)), item.get("role", "note")))
            elif len(item) == 2:
                rows.append((item[0], float(item[1]), "note"))
            else:
                rows.append((item[0], float(item[1]), item[2]))
        return self._m.add_many(rows)

    def list(self, limit: int = 50, order: str = "time") -> List[Dict[str, Any]]:
        """Up to ``limit`` entries, newest (``"time"``) or most important first."""
        return json.loads(self._m.list_json(limit, order))

    def stats(self) -> Dict[str, Any]:
        """The original design's memory stats."""
        return json.loads(self._m.stats_json())

    def context(self, max_chars: int = 2000, query: Optional[str] = None) -> Dict[str, Any]:
        """The compressed context (``text``, ``included``, ``truncated``, ``entries``),
        ranked for relevance to ``query`` too when given."""
        return json.loads(self._m.context_json(max_chars, query))

    def prune(
        self,
        *,
        keep_fraction: Optional[float] = None,
        min_importance: Optional[float] = None,
        older_than: Optional[float] = None,
        max_bytes: Optional[int] = None,
        dry_run: bool = False,
    ) -> Dict[str, Any]:
        """Removes entries by exactly one rule (``older_than`` in seconds)."""
        return json.loads(self._m.prune_json(keep_fraction, min_importance, older_than, max_bytes, dry_run))

    def search(self, query: str, limit: int = 10, role: Optional[str] = None) -> List[Dict[str, Any]]:
        """Full-text search, best first (BM25), with snippets."""
        return json.loads(self._m.search_json(query, limit, role))

    def get(self, id: int) -> Optional[Dict[str, Any]]:
        """One entry, or None."""
        return json.loads(self._m.get_json(id))

    def rate(self, id: int, importance: float) -> Optional[Dict[str, Any]]:
        """Sets one entry's importance; the entry as it now is, or None."""
        return json.loads(self._m.rate_json(id, importance))

    def forget(self, ids: Optional[Sequence[int]] = None, *, matching: Optional[str] = None, dry_run: bool = False) -> Dict[str, Any]:
        """Removes entries for good, by id or every entry matching all of a query's words."""
        return json.loads(self._m.forget_json(list(ids) if ids is not None else None, matching, dry_run))

    async def aadd(self, content: str, importance: float = 0.5, role: str = "note") -> int:
        return await asyncio.to_thread(self.add, content, importance, role)

    async def asearch(self, query: str, limit: int = 10, role: Optional[str] = None) -> List[Dict[str, Any]]:
        return await asyncio.to_thread(self.search, query, limit, role)

    async def acontext(self, max_chars: int = 2000, query: Optional[str] = None) -> Dict[str, Any]:
        return await asyncio.to_thread(self.context, max_chars, query)

    async def astats(self) -> Dict[str, Any]:
        return await asyncio.to_thread(self.stats)


class ToolCache:
    """One agent's tool-result cache: results keyed by tool and canonical params."""

    def __init__(self, native: Any) -> None:
        self._t = native

    def get(self, tool: str, params: Any) -> Optional[Any]:
        """The unexpired cached result, or None (always for a tool in ``NEVER_CACHED``)."""
        if tool in NEVER_CACHED:
            return None
        hit = self._t.get(tool, _canonical(params))
        return None if hit is None else json.loads(hit)

    def put(self, tool: str, params: Any, result: Any, ttl: float = 300.0) -> bool:
        """Caches ``result`` for ``ttl`` seconds (False, and nothing stored, for a tool in
        ``NEVER_CACHED``)."""
        if tool in NEVER_CACHED:
            return False
        return self._t.put(tool, _canonical(params), _canonical(result), float(ttl))

    def purge(self, tool: Optional[str] = None, *, expired_only: bool = False, dry_run: bool = False) -> Dict[str, Any]:
        """Removes this scope's cached results (of one tool, or expired ones only)."""
        return json.loads(self._t.purge_json(tool, expired_only, dry_run))

    def stats(self) -> Dict[str, Any]:
        """The original's tool performance stats."""
        return json.loads(self._t.stats_json())

    async def aget(self, tool: str, params: Any) -> Optional[Any]:
        return await asyncio.to_thread(self.get, tool, params)

    async def aput(self, tool: str, params: Any, result: Any, ttl: float = 300.0) -> bool:
        return await asyncio.to_thread(self.put, tool, params, result, ttl)


class Responses:
    """One agent's response cache."""

    def __init__(self, native: Any) -> None:
        self._r = native

    def lookup(self, message: str, *, fuzzy: bool = False, threshold: Optional[float] = None, guard: bool = True) -> Optional[Dict[str, Any]]:
        """The cached answer (``id``, ``kind``, ``similarity``, ``message``, ``response``)
        to ``message`` exactly, or with ``fuzzy`` to the most similar cached message."""
        return json.loads(self._r.lookup_json(message, fuzzy, threshold, guard))

    def put(self, message: str, response: str) -> int:
        """Caches ``response`` for ``message``; returns the row id."""
        return self._r.put(message, response)

    def stats(self) -> Dict[str, Any]:
        """The original's response-time stats."""
        return json.loads(self._r.stats_json())

    def clear(self) -> int:
        """Removes every cached response of this agent; how many."""
        return self._r.purge_all()

    def __len__(self) -> int:
        return self._r.entries()

    async def alookup(self, message: str, **kw: Any) -> Optional[Dict[str, Any]]:
        return await asyncio.to_thread(functools.partial(self.lookup, message, **kw))

    async def aput(self, message: str, response: str) -> int:
        return await asyncio.to_thread(self.put, message, response)


class Store:
    """An agentstore database: a path or ``sqlite:PATH`` (created if missing unless
    ``create=False``). A context manager; ``close()`` releases it."""

    def __init__(self, path_or_url: str, *, create: bool = True, busy_timeout: Optional[float] = None) -> None:
        self._s = _native.NativeStore(str(path_or_url), create, busy_timeout)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the store; handles made from it keep working until dropped."""
        self._s.close()

    @property
    def location(self) -> str:
        return self._s.location()

    def agents(self) -> List[Dict[str, Any]]:
        """Every agent, by name."""
        return json.loads(self._s.agents_json())

    def memory(self, agent: str) -> Memory:
        """The memory of ``agent`` (created on first use)."""
        return Memory(self._s.memory(agent))

    def tool_cache(self, agent: str) -> ToolCache:
        """The tool cache of ``agent``'s scope."""
        return ToolCache(self._s.tool_cache(agent))

    def responses(self, agent: str) -> Responses:
        """The response cache of ``agent``."""
        return Responses(self._s.responses(agent))

    def cached_tool(self, agent: str, *, ttl: float = 300.0, name: Optional[str] = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A decorator caching a function's JSON result in ``agent``'s tool cache, keyed
        by the function's name (or ``name``) and its arguments (canonical JSON of the
        positional and keyword arguments). Works on plain and ``async def``
        functions; a tool in ``NEVER_CACHED`` always runs."""
        cache = self.tool_cache(agent)

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            tool = name or func.__name__

            def params(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Dict[str, Any]:
                return {"args": list(args), "kwargs": kwargs}

            if inspect.iscoroutinefunction(func):

                @functools.wraps(func)
                async def run_async(*args: Any, **kwargs: Any) -> Any:
                    p = params(args, kwargs)
                    hit = await cache.aget(tool, p)
                    if hit is not None:
                        return hit
                    result = await func(*args, **kwargs)
                    await cache.aput(tool, p, result, ttl)
                    return result

                return run_async

            @functools.wraps(func)
            def run(*args: Any, **kwargs: Any) -> Any:
                p = params(args, kwargs)
                hit = cache.get(tool, p)
                if hit is not None:
                    return hit
                result = func(*args, **kwargs)
                cache.put(tool, p, result, ttl)
                return result

            return run

        return decorate
