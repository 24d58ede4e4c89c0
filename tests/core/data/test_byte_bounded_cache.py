"""ByteBoundedCache: least-recently-used eviction within a byte budget, shared by threads."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from core.data.cache import ByteBoundedCache


def test_byte_bounded_cache_evicts_least_recently_used():
    cache = ByteBoundedCache(max_bytes=10)
    loads = []

    def loader(name, size):
        return lambda: (loads.append(name) or name, size)

    cache.get("a", loader("a", 4))
    cache.get("b", loader("b", 4))
    cache.get("a", loader("a", 4))  # hit: "a" becomes most recent
    cache.get("c", loader("c", 4))  # 12 bytes > 10: evicts "b"
    cache.get("a", loader("a", 4))
    cache.get("b", loader("b", 4))
    assert loads == ["a", "b", "c", "b"] and cache.bytes <= 10


def test_threads_sharing_the_cache_get_the_right_values_within_the_budget():
    cache = ByteBoundedCache(max_bytes=64)

    def fetch(key):
        return cache.get(key, lambda: (np.full(4, key), 16))

    keys = np.random.default_rng(0).integers(0, 20, 2000)
    with ThreadPoolExecutor(max_workers=4) as pool:
        values = list(pool.map(fetch, keys))
    assert all(np.all(value == key) for key, value in zip(keys, values, strict=True))
    assert cache.bytes <= 64
