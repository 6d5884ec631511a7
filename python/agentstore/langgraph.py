"""A LangGraph node cache over agentstore's tool cache:

    from agentstore.langgraph import AgentstoreNodeCache
    graph = builder.compile(cache=AgentstoreNodeCache("agent.db"))

A node with a ``CachePolicy`` then runs once per input across restarts and across
processes sharing the file. Values are stored with LangGraph's serializer
(``serde.dumps_typed``); each namespace is a tool of the cache's agent (default
``langgraph``), so ``clear(namespaces)`` purges exactly those, and ``clear()`` all.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from langgraph.cache.base import BaseCache, FullKey, Namespace, ValueT
from langgraph.checkpoint.serde.base import SerializerProtocol

from . import Store

#: The time-to-live of an entry set without one: a hundred years.
FOREVER = 100 * 365 * 24 * 3600.0


_TOOLS: dict = {}


def _tool(ns: Namespace) -> str:
    """The tool name of a namespace (memoised: a graph has a few)."""
    name = _TOOLS.get(ns)
    if name is None:
        name = "langgraph:" + json.dumps(list(ns), ensure_ascii=False, separators=(",", ":"))
        if len(_TOOLS) < 4096:
            _TOOLS[ns] = name
    return name


class AgentstoreNodeCache(BaseCache[ValueT]):
    """A persistent, multi-process LangGraph ``BaseCache`` in an agentstore database."""

    def __init__(
        self,
        path_or_url: str = "agentstore.db",
        *,
        agent: str = "langgraph",
        serde: Optional[SerializerProtocol] = None,
    ) -> None:
        super().__init__(serde=serde)
        self._store = Store(path_or_url)
        self._cache = self._store.tool_cache(agent)._t

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, ValueT]:
        """The unexpired cached values of ``keys``."""
        out: dict[FullKey, ValueT] = {}
        for ns, key in keys:
            hit = self._cache.get(_tool(tuple(ns)), '{"key":' + json.dumps(key) + "}")
            if hit is not None:
                v = json.loads(hit)
                out[(tuple(ns), key)] = self.serde.loads_typed((v["type"], base64.b64decode(v["data"])))
        return out

    def set(self, pairs: Mapping[FullKey, tuple[ValueT, Optional[int]]]) -> None:
        """Caches each value for its TTL in seconds (None: no expiry)."""
        for (ns, key), (value, ttl) in pairs.items():
            kind, data = self.serde.dumps_typed(value)
            result = json.dumps({"type": kind, "data": base64.b64encode(data).decode("ascii")})
            self._cache.put(_tool(tuple(ns)), json.dumps({"key": key}), result, float(FOREVER if ttl is None else ttl))

    def clear(self, namespaces: Optional[Sequence[Namespace]] = None) -> None:
        """Removes the values of ``namespaces``, or every value of this cache."""
        if namespaces is None:
            self._cache.purge_json(None, False, False)
        else:
            for ns in namespaces:
                self._cache.purge_json(_tool(tuple(ns)), False, False)

    async def aget(self, keys: Sequence[FullKey]) -> dict[FullKey, ValueT]:
        return await asyncio.to_thread(self.get, keys)

    async def aset(self, pairs: Mapping[FullKey, tuple[ValueT, Optional[int]]]) -> None:
        await asyncio.to_thread(self.set, pairs)

    async def aclear(self, namespaces: Optional[Sequence[Namespace]] = None) -> None:
        await asyncio.to_thread(self.clear, namespaces)
