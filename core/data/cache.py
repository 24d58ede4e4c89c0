"""A least-recently-used cache bounded by bytes, safe to share between threads.

Book 16.3: demonstration datasets outgrow memory (images dominate), so readers keep only the
recently used part of a dataset in memory; this cache holds it within a fixed byte budget.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable


class ByteBoundedCache:
    """Maps keys to values, evicting the least recently used once over `max_bytes`.

    A value larger than the whole budget is still returned (and held until the next insert).
    Loads run outside the internal lock, so threads fill the cache in parallel; two threads
    missing the same key may both load it, and the first value stored wins.
    """

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        """Bytes currently held."""
        return self._bytes

    def get(self, key: Hashable, load: Callable[[], tuple[object, int]]):
        """The cached value of `key`; on a miss, `load()` returns (value, size in bytes)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
        value, size = load()
        with self._lock:
            if key in self._entries:
                return self._entries[key][0]
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
        return value
