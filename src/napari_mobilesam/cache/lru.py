"""A least-recently-used memory bounded in bytes: what the caches keep in memory (callers hold their own lock)."""

from __future__ import annotations

from collections import OrderedDict


class ByteLRU:
    """``key -> value`` with each value's size in bytes (``value.nbytes``); the least recently used go first.

    A value larger than the whole budget is not kept. Not thread-safe: the
    owning cache holds its lock around every call.
    """

    def __init__(self, limit: int = 0) -> None:
        self._items: OrderedDict[str, object] = OrderedDict()
        self.used = 0
        self._limit = int(limit)

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit = int(value)
        self._evict()

    def get(self, key: str):
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.used -= old.nbytes
        if value.nbytes > self._limit:
            return
        self._items[key] = value
        self.used += value.nbytes
        self._evict()

    def clear(self) -> None:
        self._items.clear()
        self.used = 0

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def _evict(self) -> None:
        while self.used > self._limit and self._items:
            _, evicted = self._items.popitem(last=False)
            self.used -= evicted.nbytes
