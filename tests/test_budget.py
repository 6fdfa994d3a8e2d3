"""The byte-bounded cache: sizes, eviction by bytes, oversize entries, expiry, threads, the setting."""

import random
import sys
import threading
from dataclasses import dataclass

import numpy as np
import pytest

from seg_core.service import budget
from seg_core.service.budget import ByteCache, CacheSettingError, budget_bytes, nbytes

KB = 1000


def block(size: int) -> np.ndarray:
    return np.zeros(size, dtype=np.uint8)


@dataclass(frozen=True)
class Pair:
    image: np.ndarray
    prob: np.ndarray
    label: str


def test_nbytes_counts_arrays_bytes_and_dataclass_fields():
    assert nbytes(block(1234)) == 1234
    assert nbytes(np.zeros((10, 10), dtype=np.float32)) == 400
    assert nbytes(b"abcd") == 4
    assert nbytes(Pair(block(100), np.zeros(10, dtype=np.float32), "ab")) == 100 + 40 + 2
    assert nbytes({"a": block(10), "b": [block(20), (block(30),)]}) == 2 + 60


def test_nbytes_counts_a_shared_buffer_once_and_a_view_by_what_it_keeps_alive():
    big = block(1000)
    assert nbytes([big, big]) == 1000
    assert nbytes(big[:10]) == 1000
    assert nbytes(Pair(big, big[500:], "")) == 1000


def test_least_recently_used_entries_are_evicted_by_bytes():
    cache = ByteCache(10 * KB)
    for name in "abcd":
        assert cache.put(name, block(3 * KB))
    # a (3 KB) made room for d: 9 KB held.
    assert "a" not in cache and len(cache) == 3 and cache.stats().bytes == 9 * KB
    cache.get("b")  # b is now the most recent
    cache.put("e", block(5 * KB))  # needs 5 KB: c and d go, b stays
    assert [k for k in "abcde" if k in cache] == ["b", "e"]
    stats = cache.stats()
    assert (stats.bytes, stats.entries, stats.evictions) == (8 * KB, 2, 3)


def test_one_big_entry_evicts_many_small_ones():
    cache = ByteCache(10 * KB)
    for i in range(10):
        cache.put(i, block(KB))
    cache.put("big", block(7 * KB))
    assert len(cache) == 4 and all(i in cache for i in (7, 8, 9)) and cache.stats().bytes == 10 * KB


def test_an_entry_larger_than_the_budget_is_not_stored_and_evicts_nothing():
    cache = ByteCache(10 * KB)
    cache.put("small", block(KB))
    cache.put("huge", block(2 * KB))
    assert not cache.put("huge", block(11 * KB))
    assert "huge" not in cache and "small" in cache
    assert cache.stats().rejected == 1 and cache.stats().bytes == KB


def test_replacing_a_key_counts_only_the_new_value():
    cache = ByteCache(10 * KB)
    cache.put("k", block(6 * KB))
    cache.put("k", block(2 * KB))
    assert cache.stats().bytes == 2 * KB and cache.stats().evictions == 0


def test_explicit_size_overrides_the_measured_one():
    cache = ByteCache(10 * KB)
    cache.put("model", object(), size=9 * KB)
    cache.put("other", block(2 * KB))
    assert "model" not in cache


def test_hits_and_misses_are_counted():
    cache = ByteCache(10 * KB)
    assert cache.get("x", "none") == "none"
    cache.put("x", block(1))
    assert cache.get("x") is not None
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (1, 1)


def test_entries_expire_after_the_ttl():
    now = [0.0]
    cache = ByteCache(10 * KB, ttl_s=60, clock=lambda: now[0])
    cache.put("old", block(KB))
    now[0] = 30
    cache.put("new", block(KB))
    now[0] = 61
    assert "old" not in cache and "new" in cache
    assert cache.stats().expired == 1 and cache.stats().bytes == KB


def test_get_or_compute_computes_once_for_concurrent_callers_of_one_key():
    cache = ByteCache(10 * KB)
    calls, started, release = [], threading.Event(), threading.Event()

    def slow():
        calls.append(1)
        started.set()
        release.wait(10)
        return block(KB)

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_compute("k", slow))) for _ in range(5)]
    threads[0].start()
    assert started.wait(10)
    for thread in threads[1:]:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1 and len(results) == 5 and all(r is results[0] for r in results)
    assert cache.stats().misses == 1 and cache.stats().hits == 4


def test_a_failed_computation_is_not_stored_and_the_next_caller_retries():
    cache = ByteCache(10 * KB)

    def broken():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("k", broken)
    assert cache.get_or_compute("k", lambda: block(10)).size == 10


def test_the_budget_holds_under_threads():
    cache = ByteCache(50 * KB)
    errors = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(300):
                key = rng.randrange(40)
                if rng.random() < 0.5:
                    cache.put(key, block(rng.randrange(1, 12) * KB))
                else:
                    cache.get_or_compute(key, lambda: block(rng.randrange(1, 12) * KB))
                stats = cache.stats()
                assert stats.bytes <= stats.max_bytes
        except AssertionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    held = sum(nbytes(cache.get(key)) for key in range(40) if key in cache)
    assert held == cache.stats().bytes <= 50 * KB


def test_the_budget_setting():
    assert budget_bytes({}) == budget.DEFAULT_CACHE_MB * 10**6
    assert budget_bytes({"WINGMASK_CACHE_MB": "250"}) == 250 * 10**6
    assert budget_bytes({"WINGMASK_CACHE_MB": "0"}) == 0
    for bad in ("lots", "-5", "nan", "inf"):
        with pytest.raises(CacheSettingError, match="WINGMASK_CACHE_MB"):
            budget_bytes({"WINGMASK_CACHE_MB": bad})


def test_a_zero_budget_stores_nothing():
    cache = ByteCache(0)
    assert cache.get_or_compute("k", lambda: block(1)).size == 1
    assert len(cache) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux only")
def test_freed_buffers_are_given_back_on_linux():
    assert budget.give_back_freed_buffers() is True
