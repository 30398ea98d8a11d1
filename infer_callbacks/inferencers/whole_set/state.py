"""Mergeable state for whole-set metrics, in bounded memory.

| class | holds |
| --- | --- |
| :class:`SpillDir` | one private temporary directory, removed when its owner is collected |
| :class:`RowStore` | rows of a fixed width, in memory up to a budget, then appended to a file |
| :class:`ScoreRuns` | weighted scores of one binary problem as sorted runs of distinct scores |

``ScoreRuns`` is what exact ranking metrics need: for each distinct score,
the summed weight of positives and of negatives. Batches are buffered and
compacted into sorted runs (in memory, or on disk beyond the budget); the
runs are read back highest score first in chunks, merged on the fly, so a
whole-set pass never holds more than the budget (plus one chunk per run).

Example:

>>> runs = ScoreRuns(max_memory_bytes=1 << 20)
>>> runs.add(np.array([0.9, 0.1, 0.5]), np.array([1, 0, 1]))
>>> other = ScoreRuns(max_memory_bytes=1 << 20)
>>> other.add(np.array([0.5, 0.3]), np.array([0, 0]))
>>> runs.merge(other)
>>> chunks = list(runs.descending())  # (tp, fp) per distinct score, highest first (counts without weights)
>>> np.concatenate([tp for tp, _ in chunks]).tolist(), np.concatenate([fp for _, fp in chunks]).tolist()
([1, 1, 0, 0], [0, 1, 1, 1])
>>> round(roc_auc(runs), 4)
0.9167
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from typing import Iterator

import numpy as np

__all__ = ["SpillDir", "RowStore", "ScoreRuns", "roc_auc", "average_precision"]

_CHUNK = 1 << 18  # distinct scores read from one run at a time


class SpillDir:
    """A temporary directory made on first use and removed by :meth:`close`,
    when this object is garbage collected, or at interpreter exit."""

    def __init__(self, tmpdir: str | os.PathLike | None = None, prefix: str = "infer_callbacks_"):
        self.tmpdir, self.prefix = (None if tmpdir is None else os.fspath(tmpdir)), prefix
        self.path: str | None = None
        self._finalizer = None
        self._count = 0

    def new_file(self, suffix: str = ".raw") -> str:
        if self.path is None:
            self.path = tempfile.mkdtemp(prefix=self.prefix, dir=self.tmpdir)
            self._finalizer = weakref.finalize(self, shutil.rmtree, self.path, ignore_errors=True)
        self._count += 1
        return os.path.join(self.path, f"{self._count}{suffix}")

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self.path, self._finalizer = None, None


class RowStore:
    """Rows of ``width`` values of ``dtype``: in memory up to
    ``max_memory_bytes``, then appended to a raw file of a :class:`SpillDir`.
    :meth:`rows` gives them all, in order (a read-only memmap if spilled)."""

    def __init__(self, width: int, dtype=np.float64, *, max_memory_bytes: int, spill: SpillDir):
        self.width, self.dtype, self.max_memory_bytes, self.spill = width, np.dtype(dtype), max_memory_bytes, spill
        self._held: list[np.ndarray] = []
        self._held_bytes = 0
        self._file = None
        self._path: str | None = None
        self.num_rows = 0
        self.num_spills = 0

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype).reshape(-1, self.width)
        if not len(rows):
            return
        self._held.append(rows)
        self._held_bytes += rows.nbytes
        self.num_rows += len(rows)
        if self._held_bytes > self.max_memory_bytes:
            self._flush()

    def _flush(self) -> None:
        if self._file is None:
            self._path = self.spill.new_file()
            self._file = open(self._path, "wb")
        for rows in self._held:
            rows.tofile(self._file)
        self._held, self._held_bytes = [], 0
        self.num_spills += 1

    def rows(self) -> np.ndarray:
        if self._file is None:
            held = np.concatenate(self._held) if self._held else np.empty((0, self.width), self.dtype)
            self._held = [held]
            return held
        self._flush()
        self._file.close()
        self._file = None
        self._held = []
        return np.memmap(self._path, dtype=self.dtype, mode="r", shape=(self.num_rows, self.width))


def _compact(scores: np.ndarray, pos: np.ndarray, neg: np.ndarray, presorted: bool = False):
    """Distinct scores, ascending, with the summed ``pos`` and ``neg`` weights."""
    if not presorted:
        order = np.argsort(scores, kind="stable")
        scores, pos, neg = scores[order], pos[order], neg[order]
    if not len(scores):
        return scores, pos, neg
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
    if len(starts) == len(scores):
        return scores, pos, neg
    return scores[starts], np.add.reduceat(pos, starts), np.add.reduceat(neg, starts)


def _compact_labels(scores: np.ndarray, positive: np.ndarray, weight: np.ndarray | None):
    """A run from raw samples: distinct scores, ascending, with positive and
    negative weights (counts, as int32 or int64, without weights)."""
    order = np.argsort(scores, kind="stable")
    scores, positive = scores[order], positive[order]
    if weight is not None:
        weight = weight[order]
        del order
        pos = np.where(positive, weight, 0.0)
        return _compact(scores, pos, weight - pos, presorted=True)
    del order
    n = len(scores)
    count_type = np.int32 if n < 2**31 else np.int64
    if not n:
        return scores, np.zeros(0, count_type), np.zeros(0, count_type)
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
    ends = np.r_[starts[1:], n]
    tp = np.diff(np.r_[0, np.cumsum(positive, dtype=np.int64)[ends - 1]]).astype(count_type)
    fp = (ends - starts).astype(count_type) - tp
    return scores[starts], tp, fp


class ScoreRuns:
    """Weighted scores of a binary problem: mergeable, exact, bounded.

    Args:
        max_memory_bytes: the budget of buffered batches and in-memory runs;
            beyond it, runs are written to ``spill``.
        spill: where runs go beyond the budget (a private one by default).

    Attributes:
        total_pos, total_neg: the summed weights of positives and negatives.
        num_nan: scores that were NaN (left out of the runs).
    """

    def __init__(self, *, max_memory_bytes: int = 64 << 20, spill: SpillDir | None = None):
        self.max_memory_bytes = int(max_memory_bytes)
        self.spill = spill if spill is not None else SpillDir(prefix="infer_callbacks_auc_")
        self._buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        self._buffer_bytes = 0
        self._runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._run_bytes = 0
        self.total_pos = self.total_neg = 0.0
        self.num_nan = 0
        self.num_spilled_runs = 0

    def add(self, scores: np.ndarray, positive: np.ndarray, weight: np.ndarray | None = None) -> None:
        """One batch: ``scores`` ``[n]``, ``positive`` ``[n]`` (bool or 0/1),
        ``weight`` ``[n]`` or ``None`` (all ones)."""
        scores = np.asarray(scores).ravel()
        if scores.dtype.kind not in "f":
            scores = scores.astype(np.float64)
        positive = np.asarray(positive).ravel().astype(bool)
        w = None if weight is None else np.asarray(weight, np.float64).ravel()
        nan = np.isnan(scores)
        if nan.any():
            self.num_nan += int(nan.sum())
            scores, positive, w = scores[~nan], positive[~nan], (None if w is None else w[~nan])
        if w is None:
            npos = int(np.count_nonzero(positive))
            self.total_pos += npos
            self.total_neg += len(scores) - npos
        else:
            wpos = float(np.dot(w, positive))
            self.total_pos += wpos
            self.total_neg += float(w.sum()) - wpos
        scores, positive = np.array(scores, copy=True), np.array(positive, copy=True)  # own copies
        self._buffer.append((scores, positive, None if w is None else np.array(w, copy=True)))
        self._buffer_bytes += scores.nbytes + positive.nbytes + (0 if w is None else w.nbytes)
        if self._buffer_bytes > self.max_memory_bytes // 2:
            self._flush()

    def merge(self, other: "ScoreRuns") -> None:
        """Take ``other``'s scores too (another device's or process's state)."""
        other._flush()
        for run in other._runs:
            self._keep(tuple(np.array(a) for a in run))
        self.total_pos += other.total_pos
        self.total_neg += other.total_neg
        self.num_nan += other.num_nan

    def _flush(self) -> None:
        if not self._buffer:
            return
        parts, self._buffer, self._buffer_bytes = self._buffer, [], 0
        weighted = any(w is not None for _, _, w in parts)
        scores = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        positive = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        weight = (np.concatenate([np.ones(len(p[0])) if p[2] is None else p[2] for p in parts])
                  if weighted else None)
        del parts
        self._keep(_compact_labels(scores, positive, weight))

    def _keep(self, run) -> None:
        size = sum(a.nbytes for a in run)
        if self._run_bytes + size <= self.max_memory_bytes // 2:
            self._runs.append(run)
            self._run_bytes += size
            return
        on_disk = []
        for a in run:
            path = self.spill.new_file()
            a.tofile(path)
            on_disk.append(np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape) if len(a) else a)
        self._runs.append(tuple(on_disk))
        self.num_spilled_runs += 1

    def descending(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(tp, fp)`` weights per distinct score, highest score first, in
        chunks (every score's weights in one chunk)."""
        self._flush()
        runs = [r for r in self._runs if len(r[0])]
        ends = [len(r[0]) for r in runs]
        while any(ends):
            live = [i for i, e in enumerate(ends) if e]
            # Take every score >= the highest of the runs' next-chunk minima:
            # at most one chunk from each run, a whole chunk from one of them.
            pivot = max(runs[i][0][max(ends[i] - _CHUNK, 0)] for i in live)
            pieces = []
            for i in live:
                lo = int(np.searchsorted(runs[i][0][:ends[i]], pivot, side="left"))
                pieces.append(tuple(np.asarray(a[lo:ends[i]]) for a in runs[i]))
                ends[i] = lo
            if len(pieces) == 1:
                _, pos, neg = pieces[0]
            else:
                _, pos, neg = _compact(*(np.concatenate(c) for c in zip(*pieces)))
            yield pos[::-1], neg[::-1]

    def close(self) -> None:
        """Drop the state and its files."""
        self._buffer, self._runs, self._buffer_bytes, self._run_bytes = [], [], 0, 0
        self.spill.close()


def roc_auc(runs: ScoreRuns) -> float:
    """The area under the ROC curve (ties count half, as scikit-learn's
    trapezoids); NaN without positives or negatives."""
    if runs.total_pos <= 0 or runs.total_neg <= 0:
        return float("nan")
    area, tp_before = 0.0, 0.0
    for tp, fp in runs.descending():
        ctp = tp_before + np.cumsum(tp)
        area += float(np.dot(fp, ctp - 0.5 * tp))
        tp_before = float(ctp[-1])
    return area / (runs.total_pos * runs.total_neg)


def average_precision(runs: ScoreRuns) -> float:
    """scikit-learn's ``average_precision_score``: the sum over distinct
    thresholds of the recall step times the precision; NaN without positives."""
    if runs.total_pos <= 0:
        return float("nan")
    total, tp_before, fp_before = 0.0, 0.0, 0.0
    for tp, fp in runs.descending():
        ctp, cfp = tp_before + np.cumsum(tp), fp_before + np.cumsum(fp)
        predicted = ctp + cfp
        hit = (tp != 0) & (predicted > 0)
        total += float(np.dot(tp[hit], ctp[hit] / predicted[hit]))
        tp_before, fp_before = float(ctp[-1]), float(cfp[-1])
    return total / runs.total_pos
