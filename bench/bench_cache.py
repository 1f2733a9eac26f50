"""Caching API: beaker-core side by side with Beaker 1.14.1 and dogpile.cache 1.5, in one process.

Run through ``bench/run`` (which builds the benchmark's own virtualenv), or directly with that virtualenv's python:
``bench/.venv/bin/python bench/bench_cache.py [--only TEXT] [--repeats N] [--min-time S] [--profile TITLE::LABEL]``.

Identical work on every side: the same value (a small dict of str, int, float and a list), the same keys, the same
expiry (300 s, so a hit is checked against its creation time everywhere), warm caches. Where the libraries differ
it is said in the scenario's note.
"""
from __future__ import annotations

import pickle
import shutil
import sys
from importlib.metadata import version

import beaker.cache as beaker_cache
import beaker.util as beaker_util
from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE

import beaker_core.cache as core_cache
import beaker_core.util as core_util
from harness import SUBJECT, Contender, Scenario, Session, Target, data_roots, print_header

BEAKER = f"Beaker {version('Beaker')}"
DOGPILE = f"dogpile.cache {version('dogpile.cache')}"
CORE_PICKLE = f"{SUBJECT} (pickle)"
EXPIRE = 300
VALUE = {"id": 42, "name": "x" * 100, "tags": ["a", "b", "c"], "score": 3.5}
KEY = "user:42"
MISS_KEYS = [f"miss:{number}" for number in range(200_000)]


def create() -> dict:
    return VALUE


def expect(actual, expected=VALUE) -> None:
    if actual != expected:
        raise AssertionError(f"got {actual!r}, expected {expected!r}")


# -- memory: plain get / put / miss ------------------------------------------------------------------------------

def memory_scenarios() -> list[Scenario]:
    core = core_cache.Cache("bench", type="memory", expire=EXPIRE)
    old = beaker_cache.Cache("bench", type="memory", expire=EXPIRE)
    dogpile_dict: dict = {}
    region = make_region().configure("dogpile.cache.memory", expiration_time=EXPIRE,
                                     arguments={"cache_dict": dogpile_dict})
    core.put(KEY, VALUE)
    old.put(KEY, VALUE)
    region.set(KEY, VALUE)

    def contenders(core_stmt, old_stmt, dogpile_stmt, **common):
        return [
            Contender(SUBJECT, core_stmt.split("(")[0].replace("cache", "Cache"), core_stmt,
                      {"cache": core, "KEY": KEY, "VALUE": VALUE, "create": create, **common}),
            Contender(DOGPILE, dogpile_stmt.split("(")[0], dogpile_stmt,
                      {"region": region, "KEY": KEY, "VALUE": VALUE, "create": create, **common}),
            Contender(BEAKER, old_stmt.split("(")[0].replace("cache", "Cache"), old_stmt,
                      {"cache": old, "KEY": KEY, "VALUE": VALUE, "create": create, **common}),
        ]

    get_hit = contenders("cache.get(KEY)", "cache.get(KEY)", "region.get(KEY)")
    get_hit[0].check = lambda: expect(core.get(KEY))
    get_hit[1].check = lambda: expect(region.get(KEY))
    get_hit[2].check = lambda: expect(old.get(KEY))

    put = contenders("cache.put(KEY, VALUE)", "cache.put(KEY, VALUE)", "region.set(KEY, VALUE)")

    miss = contenders("cache.get(next(keys), createfunc=create)", "cache.get(next(keys), createfunc=create)",
                      "region.get_or_create(next(keys), create)")
    resets = [lambda: core.backend.clear(), lambda: dogpile_dict.clear(), lambda: old.clear()]
    for contender, reset in zip(miss, resets):
        contender.max_number = len(MISS_KEYS)
        contender.before_round = _fresh_keys(contender.namespace, reset)

    def check_miss(get_or_create):
        calls = []
        value = get_or_create("check-miss", lambda: calls.append(1) or VALUE)
        expect(value)
        expect(get_or_create("check-miss", lambda: calls.append(1) or VALUE))
        if calls != [1]:
            raise AssertionError(f"the creator ran {len(calls)} times for one key")

    miss[0].check = lambda: check_miss(lambda key, fn: core.get(key, createfunc=fn))
    miss[1].check = lambda: check_miss(region.get_or_create)
    miss[2].check = lambda: check_miss(lambda key, fn: old.get(key, createfunc=fn))

    return [
        Scenario("memory: get hit", get_hit,
                 [Target("faster", DOGPILE, 1.5), Target("faster", BEAKER, 3)],
                 note="all three keep the value as a Python object in a dict of this process; "
                      "each checks the value's age against expire=300"),
        Scenario("memory: miss + create (a new key every call)", miss,
                 note="each loop walks fresh keys; the cache is emptied before each round; "
                      "all three take a per-key creation lock"),
        Scenario("memory: put", put),
    ]


def _fresh_keys(namespace: dict, reset):
    def before_round():
        reset()
        namespace["keys"] = iter(MISS_KEYS)
    return before_round


# -- memory: decorated functions ---------------------------------------------------------------------------------

def decorator_scenarios() -> list[Scenario]:
    config = {"cache.type": "memory", "cache.expire": str(EXPIRE), "cache.regions": "short_term",
              "cache.short_term.type": "memory", "cache.short_term.expire": str(EXPIRE)}
    core_manager = core_cache.CacheManager(**core_util.parse_cache_config_options(dict(config)))
    old_manager = beaker_cache.CacheManager(**beaker_util.parse_cache_config_options(dict(config)))
    region = make_region().configure("dogpile.cache.memory", expiration_time=EXPIRE)
    calls = {"count": 0}

    def body(user_id, page):
        calls["count"] += 1
        return {**VALUE, "id": user_id, "page": page}

    # one function per decorator, so that no two share a namespace
    def core_manager_lookup(user_id, page):
        return body(user_id, page)

    def core_region_lookup(user_id, page):
        return body(user_id, page)

    def old_manager_lookup(user_id, page):
        return body(user_id, page)

    def old_region_lookup(user_id, page):
        return body(user_id, page)

    def dogpile_lookup(user_id, page):
        return body(user_id, page)

    functions = {
        "core_cache": core_manager.cache("bench", expire=EXPIRE)(core_manager_lookup),
        "core_region": core_cache.cache_region("short_term", "bench")(core_region_lookup),
        "old_cache": old_manager.cache("bench", expire=EXPIRE)(old_manager_lookup),
        "old_region": beaker_cache.cache_region("short_term", "bench")(old_region_lookup),
        "dogpile": region.cache_on_arguments()(dogpile_lookup),
    }

    def check(name):
        def run():
            function = functions[name]
            before = calls["count"]
            first = function(42, 3)
            second = function(42, 3)
            expect(second, first)
            if calls["count"] - before > 1:
                raise AssertionError(f"{name}: the decorated body ran twice for one key")
            if calls["count"] - before == 0 and first != {**VALUE, "id": 42, "page": 3}:
                raise AssertionError(f"{name}: wrong value {first!r}")
        return run

    def contender(label, what, name):
        return Contender(label, what, "lookup(42, 3)", {"lookup": functions[name]}, check=check(name))

    return [
        Scenario("memory: decorated function hit, @cache.cache", [
            contender(SUBJECT, "@cache.cache", "core_cache"),
            contender(BEAKER, "@cache.cache", "old_cache"),
            contender(DOGPILE, "@region.cache_on_arguments", "dogpile"),
        ], [Target("faster", BEAKER, 2)],
            note="two positional arguments; each library builds its key from the function's namespace and the "
                 "arguments on every call"),
        Scenario("memory: decorated function hit, @cache_region", [
            contender(SUBJECT, "@cache_region", "core_region"),
            contender(BEAKER, "@cache_region", "old_region"),
            contender(DOGPILE, "@region.cache_on_arguments", "dogpile"),
        ]),
    ]


# -- file backend ------------------------------------------------------------------------------------------------

def file_scenarios(where: str, root: str) -> list[Scenario]:
    core_json = core_cache.Cache("bench", type="file", expire=EXPIRE, data_dir=f"{root}/core-json")
    core_pickle = core_cache.Cache("bench", type="file", expire=EXPIRE, data_dir=f"{root}/core-pickle",
                                   serializer="pickle")
    old = beaker_cache.Cache("bench", type="file", expire=EXPIRE, data_dir=f"{root}/beaker")
    caches = [(SUBJECT, core_json), (CORE_PICKLE, core_pickle), (BEAKER, old)]
    for _, cache in caches:
        cache.put(KEY, VALUE)

    def contenders(stmt, what):
        return [Contender(label, what, stmt, {"cache": cache, "KEY": KEY, "VALUE": VALUE, "create": create},
                          check=lambda cache=cache: expect(cache.get(KEY)))
                for label, cache in caches]

    recreate = contenders("cache.remove_value(KEY); cache.get(KEY, createfunc=create)",
                          "remove_value + get(createfunc)")
    size_note = (f"one value of {len(pickle.dumps(VALUE))} bytes pickled; Beaker keeps a whole namespace in one "
                 "pickle file, beaker-core one file per key; beaker-core's default serializer is json, Beaker's "
                 "file cache always pickles, so beaker-core is also shown with serializer=pickle")
    return [
        Scenario(f"file ({where}): get hit", contenders("cache.get(KEY)", "Cache.get"), note=size_note),
        Scenario(f"file ({where}): put", contenders("cache.put(KEY, VALUE)", "Cache.put")),
        Scenario(f"file ({where}): remove + miss + create", recreate,
                 note="the same key is removed and then created again, so Beaker's namespace file stays one key "
                      "long"),
    ]


def main() -> int:
    session = Session("bench_cache", __doc__.splitlines()[0])
    print_header("caching API benchmark", ("beaker-core", "Beaker", "dogpile.cache"))
    for scenario in memory_scenarios() + decorator_scenarios():
        session.run(scenario)
    for where, root in data_roots("beaker-bench-cache-"):
        try:
            for scenario in file_scenarios(where, root):
                session.run(scenario)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return session.finish()


if __name__ == "__main__":
    sys.exit(main())
