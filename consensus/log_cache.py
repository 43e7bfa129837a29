"""The in-memory tail of the Raft log, beside its LevelDB store (etcd keeps a MemoryStorage beside its WAL for the
same reason): the core reads the entries it sends and applies, and their terms, without decoding LevelDB records
again. A lagging follower's catch-up or a cache turned off (`bytes_max` 0) read the segments instead.

The cache is always a suffix of the log, so truncation, compaction and snapshots only cut it. It is bounded by
`bytes_max`, each entry counting `len(data) + CACHE_ENTRY_OVERHEAD_BYTES`; it remembers the size of each run of
entries as they were appended, so that neither appending nor trimming walks the entries in Python.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from itertools import chain, islice
from operator import attrgetter

from consensus.invariant import require
from consensus.log import limit_size
from consensus.messages import Entry

CACHE_BYTES_MAX = 64 << 20
"""Default bound of the in-memory log tail; each entry counts `len(data) + CACHE_ENTRY_OVERHEAD_BYTES`."""
CACHE_ENTRY_OVERHEAD_BYTES = 160
"""Roughly what CPython spends on a cached `Entry` beyond its data (the tuple, its ints, the bytes header)."""
_DATA = attrgetter("data")


class TailCache:
    """The log's entries `first` .. `first + len(entries) - 1`, the newest ones, within `bytes_max`. The store
    reads `first` and `entries` directly on its hot paths (`term`, `entries`); only these methods change them."""

    __slots__ = ("bytes_max", "data_bytes", "entries", "first", "longest", "runs")

    def __init__(self, bytes_max: int, first: int = 1) -> None:
        require(bytes_max >= 0, "cache_bytes_max must not be negative")
        self.bytes_max = bytes_max
        self.entries: list[Entry] = []
        """A suffix of the log, possibly empty."""
        self.first = first
        self.data_bytes = 0
        """Data bytes of the cached entries."""
        self.longest = 0
        """At least the data bytes of the longest cached entry: if n * longest fits a read's size limit, the read
        needs no pass over its entries to find where to cut."""
        self.runs: deque[list[int]] = deque()
        """[count, data bytes] of each run of cached entries as they were appended, oldest first (they add up to
        the cache), so that trimming drops whole runs without measuring their entries again."""

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self, first: int) -> None:
        """Empty, the next entry to cache being `first`."""
        self.entries = []
        self.first = first
        self.data_bytes = 0
        self.longest = 0
        self.runs = deque()

    def fill(self, last_index: int, tail: Iterable[Sequence[Entry]]) -> None:
        """Refill with the log's tail, ending at `last_index`: `tail` gives batches of entries newest first (each
        contiguous, each ending where the previous one starts), and is read only until the bound is reached."""
        self.clear(last_index + 1)
        if self.bytes_max == 0:
            return
        batches: list[Sequence[Entry]] = []
        cost = 0
        for ents in tail:
            batches.append(ents)
            cost += sum(map(len, map(_DATA, ents))) + CACHE_ENTRY_OVERHEAD_BYTES * len(ents)
            if cost > self.bytes_max:
                break
        batches.reverse()
        cached = list(chain.from_iterable(batches))
        if cached:
            require(cached[-1].index == last_index and cached[-1].index - cached[0].index == len(cached) - 1,
                    "the cache is filled with a contiguous tail of the log")
            self.first = last_index + 1 - len(cached)
            lengths = list(map(len, map(_DATA, cached)))
            self.append(cached, sum(lengths), max(lengths))

    def read(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi) (cached: lo >= first), cut to the longest prefix within `max_bytes` but at least one
        entry."""
        a = lo - self.first
        b = hi - self.first
        ents = self.entries[a:b]
        if (b - a) * self.longest <= max_bytes:
            return ents  # fits whatever the entries hold: no pass over them
        return limit_size(ents, max_bytes)

    def append(self, entries: Sequence[Entry], data_bytes: int, longest: int) -> None:
        """`entries` (holding `data_bytes`, at most `longest` each) were just written: they replace the cached
        suffix from entries[0].index."""
        at = entries[0].index - self.first
        if at < 0:
            self.clear(entries[0].index)  # they replace more than we cache
        elif at < len(self.entries):
            self._drop_suffix(len(self.entries) - at)
        self.entries += entries
        self.data_bytes += data_bytes
        self.runs.append([len(entries), data_bytes])
        self.longest = max(self.longest, longest)
        if self.cost() > self.bytes_max:
            self._trim()

    def cost(self) -> int:
        """What the cache counts against `bytes_max`."""
        return self.data_bytes + CACHE_ENTRY_OVERHEAD_BYTES * len(self.entries)

    def drop_to(self, index: int) -> None:
        """Entries through `index` are compacted away."""
        cut = min(len(self.entries), index + 1 - self.first)
        if cut > 0:
            self._cut(cut)
        self.first = max(self.first, index + 1)

    def _cut(self, cut: int) -> None:
        """Drop the oldest `cut` cached entries. Whole runs leave by their recorded size; only a run cut in two
        is measured."""
        runs = self.runs
        left = cut
        while left:
            k, size = runs[0]
            if k > left:
                part = sum(map(len, map(_DATA, islice(self.entries, cut - left, cut))))
                runs[0] = [k - left, size - part]
                self.data_bytes -= part
                break
            runs.popleft()
            self.data_bytes -= size
            left -= k
        del self.entries[:cut]
        self.first += cut
        if not self.entries:
            self.longest = 0

    def _drop_suffix(self, n: int) -> None:
        """Drop the newest `n` cached entries (a truncated suffix)."""
        runs = self.runs
        while n:
            k, size = runs[-1]
            if k > n:
                part = sum(map(len, map(_DATA, islice(self.entries, len(self.entries) - n, None))))
                runs[-1] = [k - n, size - part]
                self.data_bytes -= part
                del self.entries[len(self.entries) - n:]
                return
            runs.pop()
            self.data_bytes -= size
            del self.entries[len(self.entries) - k:]
            n -= k

    def _trim(self) -> None:
        """Drop the oldest runs of cached entries until the rest cost at most 3/4 of the bound (so that trimming is
        not paid every save). No pass over the entries, except to split a run: runs know their size."""
        target = self.bytes_max * 3 // 4
        while self.entries and self.cost() > target:
            runs = self.runs
            cost = self.cost()
            cut = 0
            for k, size in islice(runs, len(runs) - 1):
                if cost <= target:
                    break
                cost -= size + CACHE_ENTRY_OVERHEAD_BYTES * k
                cut += k
            if cost > target:
                # The newest run alone is over: cut into it at its average cost per entry (again if its oldest
                # entries turn out smaller than the average).
                k, size = runs[-1]
                average = (size + CACHE_ENTRY_OVERHEAD_BYTES * k) // k
                cut += min(k, -(-(cost - target) // average))
            self._cut(cut)
