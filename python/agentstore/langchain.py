"""A LangChain LLM cache over agentstore's response cache:

    from langchain_core.globals import set_llm_cache
    from agentstore.langchain import AgentstoreCache
    set_llm_cache(AgentstoreCache("agent.db"))

Each ``llm_string`` (the model and its parameters) is an agent of its own, named
``<namespace>:<sha256 of the llm_string>``, so two different ``llm_string``s never
share an answer. Generations are stored as LangChain serialises them
(``langchain_core.load.dumpd``), so they come back with their type. Exact by default;
``fuzzy=True`` also answers a prompt whose word set is similar enough (Jaccard above
``threshold``) to a cached one, with the number and negation guard: an opt-in,
because a near-identical prompt can still need another answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import warnings
from typing import Any, Optional, Sequence

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import dumpd, load
from langchain_core.outputs import Generation

#: The serialised id of a plain ``Generation``, revived without the general loader.
_GENERATION_ID = ["langchain", "schema", "output", "Generation"]


def _revive(d: Any) -> Any:
    """A generation from its ``dumpd`` form: a plain ``Generation`` directly (the
    common case, 10x cheaper), anything else through LangChain's loader, trusting the
    file as LangChain's own SQLite cache trusts its file (``allowed_objects="core"``:
    generations and their messages)."""
    if isinstance(d, dict) and d.get("id") == _GENERATION_ID and d.get("type") == "constructor":
        return Generation(**d.get("kwargs", {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(d, allowed_objects="core")

from . import Store


class AgentstoreCache(BaseCache):
    """A persistent, multi-process ``BaseCache`` in an agentstore database."""

    def __init__(
        self,
        path_or_url: str = "agentstore.db",
        *,
        namespace: str = "langchain",
        fuzzy: bool = False,
        threshold: Optional[float] = None,
    ) -> None:
        self._store = Store(path_or_url)
        self._namespace = namespace
        self._fuzzy = fuzzy
        self._threshold = threshold
        self._responses: dict = {}

    def _cache(self, llm_string: str) -> Any:
        r = self._responses.get(llm_string)
        if r is None:
            digest = hashlib.sha256(llm_string.encode("utf-8")).hexdigest()[:40]
            r = self._store.responses(f"{self._namespace}:{digest}")._r
            self._responses[llm_string] = r
        return r

    def lookup(self, prompt: str, llm_string: str) -> Optional[RETURN_VAL_TYPE]:
        """The cached generations for ``prompt`` under ``llm_string``, or None."""
        r = self._cache(llm_string)
        if self._fuzzy:
            hit = json.loads(r.lookup_json(prompt, True, self._threshold, True))
            text = None if hit is None else hit["response"]
        else:
            text = r.lookup_exact(prompt)
        if text is None:
            return None
        return [_revive(g) for g in json.loads(text)]

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Caches the generations for ``prompt`` under ``llm_string``."""
        self._cache(llm_string).put(prompt, json.dumps([dumpd(g) for g in return_val]))

    def clear(self, **kwargs: Any) -> None:
        """Removes every answer this cache's namespace holds (other namespaces and the
        agents' own caches stay)."""
        prefix = self._namespace + ":"
        for agent in self._store.agents():
            if agent["name"].startswith(prefix):
                self._store.responses(agent["name"]).clear()
        self._responses.clear()

    async def alookup(self, prompt: str, llm_string: str) -> Optional[RETURN_VAL_TYPE]:
        return await asyncio.to_thread(self.lookup, prompt, llm_string)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        await asyncio.to_thread(self.update, prompt, llm_string, return_val)

    async def aclear(self, **kwargs: Any) -> None:
        await asyncio.to_thread(self.clear, **kwargs)
