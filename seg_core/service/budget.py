"""A cache bounded by bytes, so many users with big photos cannot grow a server without limit.

A cache bounded by entries says nothing about memory: one 48-megapixel photo
with its probability map weighs as much as a thousand small ones. A
:class:`ByteCache` sizes every entry by the arrays and bytes it holds
(:func:`nbytes`) and evicts the least recently used entries until the total
fits its budget; an entry larger than the whole budget is not stored at all.

The process-wide budget is a setting: ``WINGMASK_CACHE_MB`` (default
:data:`DEFAULT_CACHE_MB`). :func:`process_cache` is one cache with that
budget that every front end in the process shares, with keys that name what
they hold (``("analysis", ...)``, ``("display", ...)``), so the budget is one
ceiling for all of them rather than one per cache.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

import numpy as np

CACHE_MB_ENV = "WINGMASK_CACHE_MB"
#: Default budget in MB (10**6 bytes). A 2 GB server holds TensorFlow with the
#: default model (about 850 MB) and the photos being analysed (a 48-megapixel
#: one needs about 530 MB at its peak; see :mod:`seg_core.service.admission`), which
#: leaves about this much. With compact entries (:mod:`seg_core.outputs.compact`: 60 MB
#: for a 48-megapixel photo, 24 MB for a 12-megapixel one) it holds six of the
#: former or sixteen of the latter.
DEFAULT_CACHE_MB = 400

V = TypeVar("V")
_MISSING = object()


class CacheSettingError(ValueError):
    """The cache budget setting is not a usable number; the message says which value was given."""


def budget_bytes(environ: Mapping[str, str] = os.environ) -> int:
    """The cache budget in bytes from ``WINGMASK_CACHE_MB`` (default :data:`DEFAULT_CACHE_MB`).

    ``0`` is allowed and disables caching (every entry is larger than the budget).

    Raises:
        CacheSettingError: the variable is set but is not a number of MB at least 0.
    """
    raw = environ.get(CACHE_MB_ENV, "").strip()
    if not raw:
        return DEFAULT_CACHE_MB * 10**6
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = -1.0
    if not megabytes >= 0 or megabytes == float("inf"):
        raise CacheSettingError(f"{CACHE_MB_ENV}={raw!r} is not a number of megabytes (0 or more)")
    return int(megabytes * 10**6)


def nbytes(value: Any) -> int:
    """Bytes held by ``value``: its NumPy arrays and bytes objects, found recursively.

    Arrays count their whole buffer (a view counts the array it looks into,
    which is what it keeps alive), each buffer once however often it is
    referenced. Dataclasses, mappings and sequences count their parts; strings
    their UTF-8 length; any other object :func:`sys.getsizeof`, which does not
    see what it refers to, so pass an explicit size to :meth:`ByteCache.put`
    for objects such as loaded models.
    """
    return _nbytes(value, set())


def _nbytes(value: Any, seen: set[int]) -> int:
    if isinstance(value, np.ndarray):
        base = value
        while isinstance(base.base, np.ndarray):
            base = base.base
        if id(base) in seen:
            return 0
        seen.add(id(base))
        return base.nbytes
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    if isinstance(value, str):
        return len(value.encode())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(_nbytes(getattr(value, f.name), seen) for f in dataclasses.fields(value))
    if isinstance(value, Mapping):
        return sum(_nbytes(k, seen) + _nbytes(v, seen) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(_nbytes(item, seen) for item in value)
    return sys.getsizeof(value)


@dataclasses.dataclass(frozen=True)
class CacheStats:
    """A snapshot of a cache's counters.

    Attributes:
        max_bytes: the budget.
        bytes: bytes held now (the sum of the entries' sizes).
        entries: entries held now.
        hits: lookups answered from the cache.
        misses: lookups that found nothing (each :meth:`ByteCache.get_or_compute` miss computes once).
        evictions: entries dropped to make room.
        expired: entries dropped because they outlived ``ttl_s``.
        rejected: entries not stored because they alone exceed the budget.
    """

    max_bytes: int
    bytes: int
    entries: int
    hits: int
    misses: int
    evictions: int
    expired: int
    rejected: int


@dataclasses.dataclass
class _Entry:
    value: Any
    size: int
    stored_at: float


@dataclasses.dataclass
class _Pending:
    """The lock that makes concurrent misses on one key compute once."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    users: int = 0


class ByteCache:
    """A thread-safe least-recently-used cache whose entries together stay within ``max_bytes``.

    Values are shared, not copied: store read-only arrays (or values nobody
    modifies), as :func:`seg_core.outputs.compact.analyse_compact` returns them.

    Args:
        max_bytes: the budget; storing an entry evicts least recently used ones until it fits.
        ttl_s: entries older than this are dropped (None: kept until evicted).
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, max_bytes: int, ttl_s: float | None = None, clock: Callable[[], float] = time.monotonic):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be 0 or more, got {max_bytes}")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self.max_bytes, self.ttl_s, self._clock = max_bytes, ttl_s, clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._pending: dict[Hashable, _Pending] = {}
        self._lock = threading.Lock()
        self._bytes = self._hits = self._misses = self._evictions = self._expired = self._rejected = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return self._lookup(key) is not _MISSING

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value stored under ``key`` (now the most recently used), or ``default``."""
        with self._lock:
            value = self._lookup(key)
            if value is _MISSING:
                self._misses += 1
                return default
            self._hits += 1
            return value

    def put(self, key: Hashable, value: Any, size: int | None = None) -> bool:
        """Store ``value``, evicting least recently used entries until it fits.

        Args:
            size: its size in bytes; by default :func:`nbytes` of the value.

        Returns:
            False when the value alone exceeds the budget: it is not stored
            (and any older value under ``key`` is dropped).
        """
        size = nbytes(value) if size is None else size
        with self._lock:
            self._drop(key)
            self._expire()
            if size > self.max_bytes:
                self._rejected += 1
                return False
            while self._bytes + size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.size
                self._evictions += 1
            self._entries[key] = _Entry(value, size, self._clock())
            self._bytes += size
            return True

    def get_or_compute(self, key: Hashable, compute: Callable[[], V], size: int | None = None) -> V:
        """The value under ``key``, computed by ``compute()`` and stored on a miss.

        Concurrent callers with the same key compute once: the others wait and
        get the stored value (or compute themselves if it could not be stored
        or the computation raised). Different keys never wait for each other.
        """
        with self._lock:
            value = self._lookup(key)
            if value is not _MISSING:
                self._hits += 1
                return value
            pending = self._pending.setdefault(key, _Pending())
            pending.users += 1
        try:
            with pending.lock:
                with self._lock:
                    value = self._lookup(key)
                    if value is not _MISSING:
                        self._hits += 1
                        return value
                    self._misses += 1
                value = compute()
                self.put(key, value, size)
                return value
        finally:
            with self._lock:
                pending.users -= 1
                if pending.users == 0:
                    del self._pending[key]

    def discard(self, key: Hashable) -> None:
        """Forget ``key`` if it is stored."""
        with self._lock:
            self._drop(key)

    def clear(self) -> None:
        """Forget every entry (the counters keep counting)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        """The budget, what is held now, and the counters since creation."""
        with self._lock:
            self._expire()
            return CacheStats(
                self.max_bytes,
                self._bytes,
                len(self._entries),
                self._hits,
                self._misses,
                self._evictions,
                self._expired,
                self._rejected,
            )

    def _lookup(self, key: Hashable) -> Any:
        """The live value under ``key`` made most recent, or ``_MISSING`` (caller holds the lock)."""
        entry = self._entries.get(key)
        if entry is None:
            return _MISSING
        if self._is_stale(entry):
            self._drop(key)
            self._expired += 1
            return _MISSING
        self._entries.move_to_end(key)
        return entry.value

    def _is_stale(self, entry: _Entry) -> bool:
        return self.ttl_s is not None and self._clock() - entry.stored_at > self.ttl_s

    def _expire(self) -> None:
        if self.ttl_s is None:
            return
        for key in [key for key, entry in self._entries.items() if self._is_stale(entry)]:
            self._drop(key)
            self._expired += 1

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size


#: glibc's ``M_MMAP_THRESHOLD`` option of ``mallopt``.
_M_MMAP_THRESHOLD = -3
#: Buffers from this size up get memory of their own, handed back to the system when freed.
MMAP_THRESHOLD_BYTES = 1 << 20


def give_back_freed_buffers(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Have the C allocator return every freed buffer of ``threshold`` bytes or more to the system.

    By default glibc raises that threshold to 32 MB after the first large free,
    so the many 1-32 MB arrays of a photo's analysis and display (levels,
    display copies, pictures) come from per-thread heaps, which keep their
    freed memory: a server that ran many sessions stays hundreds of MB larger
    than what it holds (README, "Memory and load"). Call it once at start-up,
    before the first photo. Linux with glibc only; elsewhere it does nothing.

    Returns:
        True when the setting was applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False


_PROCESS_CACHE: ByteCache | None = None
_PROCESS_CACHE_LOCK = threading.Lock()
#: Entries of the process cache expire after an hour (as the dashboard's results always have);
#: expired entries are dropped at the next store or lookup.
PROCESS_TTL_S = 3600.0


def process_cache() -> ByteCache:
    """The one cache of this process, with the ``WINGMASK_CACHE_MB`` budget (read on first use).

    Raises:
        CacheSettingError: the setting is not a number of MB.
    """
    global _PROCESS_CACHE
    with _PROCESS_CACHE_LOCK:
        if _PROCESS_CACHE is None:
            _PROCESS_CACHE = ByteCache(budget_bytes(), ttl_s=PROCESS_TTL_S)
        return _PROCESS_CACHE
