"""AgentstoreCache as LangChain's LLM cache, with LangChain's own fake LLM."""

import asyncio
import subprocess
import sys

from langchain_core.language_models.fake import FakeListLLM
from langchain_core.outputs import Generation

from agentstore.langchain import AgentstoreCache


def test_the_second_identical_call_is_served_by_the_cache(db):
    cache = AgentstoreCache(db)
    llm = FakeListLLM(responses=["first answer", "second answer"], cache=cache)
    assert llm.invoke("what is 2 + 2?") == "first answer"
    assert llm.invoke("what is 2 + 2?") == "first answer", "served from the cache"
    assert llm.i == 1, "the fake LLM was called once"
    assert llm.invoke("another prompt") == "second answer"


def test_a_second_process_gets_the_cached_answer(db):
    llm = FakeListLLM(responses=["from the parent"], cache=AgentstoreCache(db))
    assert llm.invoke("shared prompt") == "from the parent"
    code = (
        "import sys\n"
        "from langchain_core.language_models.fake import FakeListLLM\n"
        "from agentstore.langchain import AgentstoreCache\n"
        "class Never(FakeListLLM):\n"
        "    def _call(self, *a, **k):\n"
        "        raise AssertionError('the LLM was called')\n"
        "llm = Never(responses=['from the parent'], cache=AgentstoreCache(sys.argv[1]))\n"
        "print(llm.invoke('shared prompt'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, db], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "from the parent"


def test_llm_strings_never_share_and_generations_keep_their_type(db):
    cache = AgentstoreCache(db)
    gens = [Generation(text="hello", generation_info={"finish_reason": "stop"})]
    cache.update("p", "model=a temperature=0", gens)
    assert cache.lookup("p", "model=a temperature=1") is None
    back = cache.lookup("p", "model=a temperature=0")
    assert back == gens and type(back[0]) is Generation
    assert cache.lookup("p\x00 naïve", "model=a temperature=0") is None


def test_clear_empties_only_this_caches_entries(db):
    from agentstore import Store

    mine, theirs = AgentstoreCache(db), AgentstoreCache(db, namespace="other")
    mine.update("p", "m", [Generation(text="a")])
    theirs.update("p", "m", [Generation(text="b")])
    with Store(db) as store:
        store.responses("bot").put("p", "the agent's own")
    mine.clear()
    assert mine.lookup("p", "m") is None
    assert theirs.lookup("p", "m")[0].text == "b"
    with Store(db) as store:
        assert store.responses("bot").lookup("p")["response"] == "the agent's own"


def test_fuzzy_is_an_opt_in(db):
    exact, fuzzy = AgentstoreCache(db), AgentstoreCache(db, fuzzy=True, threshold=0.5)
    exact.update("what is the capital of France", "m", [Generation(text="Paris")])
    assert exact.lookup("what is the capital of france?", "m") is None
    assert fuzzy.lookup("what is the capital of france?", "m")[0].text == "Paris"
    assert fuzzy.lookup("what is not the capital of france?", "m") is None, "the guard"


def test_async_paths(db):
    async def main():
        cache = AgentstoreCache(db)
        await cache.aupdate("p", "m", [Generation(text="x")])
        assert (await cache.alookup("p", "m"))[0].text == "x"
        await cache.aclear()
        assert await cache.alookup("p", "m") is None
        llm = FakeListLLM(responses=["one", "two"], cache=cache)
        assert await llm.ainvoke("q") == "one"
        assert await llm.ainvoke("q") == "one"

    asyncio.run(main())


def test_set_llm_cache_is_all_a_user_writes_and_other_parameters_miss(db):
    from langchain_core.globals import set_llm_cache

    set_llm_cache(AgentstoreCache(db))
    try:
        a = FakeListLLM(responses=["a1", "a2"])
        b = FakeListLLM(responses=["b1", "b2"])  # other parameters: another llm_string
        assert a.invoke("same prompt") == "a1"
        assert a.invoke("same prompt") == "a1"
        assert b.invoke("same prompt") == "b1", "a different model configuration misses"
        assert (a.i, b.i) == (1, 1)
    finally:
        set_llm_cache(None)
