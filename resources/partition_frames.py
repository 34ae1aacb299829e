"""A run's partitions one at a time: what partitioned assets exchange with the Parquet IO manager.

A single-run backfill covers a year, but its memory must not grow with the range. A range input
arrives as ``PartitionFrames``, a read-only mapping from partition key to frame that reads a
partition when it is first used and keeps only the few used last; an output leaves as a
``PartitionStream``, whose frames are produced one at a time while the IO manager writes them.
A plain ``dict`` of frames is still accepted as an output, for small runs and tests.
"""

import tempfile
from collections import OrderedDict
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, Sequence, ValuesView
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd


class PartitionFrames(dict):
    """Frames of ``keys``, each loaded by ``load(key)`` when it is accessed; read-only.

    The ``cache_size`` frames used last stay in memory (least recently used first out), so an
    asset that reads a sliding window of partitions (its day and the days before) reads each
    file once if the cache holds a window. Iteration, ``len`` and ``in`` never load anything.
    A frame is shared with the cache: treat it as read-only.

    It behaves as a ``Mapping``; it is a ``dict`` (with no items of its own) only so that inputs
    annotated ``dict[str, pd.DataFrame]`` pass Dagster's type check, which then loads every
    partition once to check its type: annotate a range input ``Mapping`` to skip that.
    """

    def __init__(
        self, keys: Sequence[str], load: Callable[[str], pd.DataFrame], cache_size: int = 1
    ) -> None:
        super().__init__()
        self._keys = list(dict.fromkeys(keys))
        self._known = frozenset(self._keys)
        self._load = load
        self._cache: OrderedDict[str, pd.DataFrame] = OrderedDict()
        self.cache_size = max(1, cache_size)
        self.loads = 0
        """How many times a partition was loaded (a cache miss)."""
        self.peak_cached = 0
        """The most frames held at once."""

    def __getitem__(self, key: str) -> pd.DataFrame:
        if key not in self._known:
            raise KeyError(key)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        while len(self._cache) >= self.cache_size:
            self._cache.popitem(last=False)  # before loading: never cache_size + 1 frames
        frame = self._load(key)
        self.loads += 1
        self._cache[key] = frame
        self.peak_cached = max(self.peak_cached, len(self._cache))
        return frame

    def __contains__(self, key: object) -> bool:
        return key in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __reversed__(self) -> Iterator[str]:
        return reversed(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        return Mapping.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PartitionFrames({len(self)} partitions, {len(self._cache)} in memory)"

    get = Mapping.get

    def keys(self) -> KeysView[str]:  # type: ignore[override]
        return KeysView(self)

    def items(self) -> ItemsView[str, pd.DataFrame]:  # type: ignore[override]
        return ItemsView(self)

    def values(self) -> ValuesView[pd.DataFrame]:  # type: ignore[override]
        return ValuesView(self)

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("PartitionFrames is read-only")

    __setitem__ = __delitem__ = __ior__ = _read_only  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]

    def copy(self) -> dict[str, pd.DataFrame]:  # type: ignore[override]
        """Every frame, loaded, as a plain ``dict`` (the whole range in memory)."""
        return {key: self[key] for key in self._keys}

    def __or__(self, other: object) -> dict:  # type: ignore[override]
        return {**self.copy(), **other} if isinstance(other, Mapping) else NotImplemented

    def __reduce__(self) -> tuple:
        return (dict, (self.copy(),))


class PartitionStream:
    """The frames of a run's ``keys``, produced one at a time by ``produce(key)`` in key order
    while the IO manager writes each (then drops it); consumed once.

    ``metadata`` gives the output's metadata that is only known once every partition has been
    produced (counts over the range); the IO manager adds it after the last write.
    """

    def __init__(
        self,
        keys: Sequence[str],
        produce: Callable[[str], pd.DataFrame],
        metadata: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.keys = list(keys)
        self._produce = produce
        self._metadata = metadata
        self._consumed = False

    def __iter__(self) -> Iterator[tuple[str, pd.DataFrame]]:
        if self._consumed:
            raise RuntimeError("A PartitionStream is produced once; it has been consumed.")
        self._consumed = True
        for key in self.keys:
            yield key, self._produce(key)

    def metadata(self) -> Mapping[str, Any]:
        return dict(self._metadata()) if self._metadata else {}


class FrameSpill:
    """Frames set aside on local disk while a run produces another output from the same pass
    (e.g. the rejected rows while the clean ones are written), read back one at a time.

    Use as a context manager: the directory is removed on exit.
    """

    def __init__(self, prefix: str = "partition_spill_") -> None:
        self._directory = tempfile.TemporaryDirectory(prefix=prefix)
        self._paths: dict[str, Path] = {}

    def __enter__(self) -> "FrameSpill":
        return self

    def __exit__(self, *exc: object) -> None:
        self._directory.cleanup()

    def write(self, key: str, frame: pd.DataFrame) -> None:
        if key in self._paths:
            raise ValueError(f"partition {key} was already spilled")
        path = Path(self._directory.name) / f"{len(self._paths)}.parquet"
        frame.to_parquet(path, index=False)
        self._paths[key] = path

    def frames(self) -> PartitionFrames:
        """The spilled frames, in the order they were written."""
        return PartitionFrames(list(self._paths), lambda key: pd.read_parquet(self._paths[key]))
