"""GatherOutputs: keep every sample's outputs, score the whole set at the end.

For metrics that need all outputs at once (scikit-learn's
``average_precision_score``, COCO mAP, ...). State: the whole set, in
dataset order, spilled to a temporary directory above ``max_memory_mb``.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import weakref
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from infer_callbacks._util import describe_arrays
from infer_callbacks.inferencers.base import Inferencer
from infer_callbacks.inferencers.fetches import tensor_names

__all__ = ["GatherOutputs"]


def _batch_length(names: Sequence[str], arrays: Sequence[np.ndarray], who: str) -> int:
    """The common batch dimension of ``arrays``; raises if they differ."""
    lengths = []
    for name, value in zip(names, arrays):
        if np.ndim(value) == 0:
            raise ValueError(
                f"{who} needs fetches with a batch dimension, but {name!r} is a scalar "
                f"(shape ()). Fetch a per-example tensor instead.")
        lengths.append(len(value))
    if len(set(lengths)) > 1:
        raise ValueError(
            f"{who}: the fetches have different batch dimensions in one batch: "
            f"{describe_arrays(names, arrays)}. Every fetch must have one row per example; "
            "reshape or tile it in the tower.")
    return lengths[0]


class GatherOutputs(Inferencer):
    """Keeps every sample's outputs in dataset order and scores them at the end.

    For metrics that need the whole set at once (average precision from
    scikit-learn, ranking metrics, calibration, ...). Batches are kept in the
    order the runner delivers them (dataset order; device slices in replica
    order under data-parallel validation). At the end of the run the batches
    are concatenated and ``score_fn({fetch_name: array})`` is called once;
    it returns ``{name: scalar}`` for the epoch's ``logs``.

    Memory: at most ``max_memory_mb`` of outputs is held in memory (plus one
    batch). When the next batch would exceed it, the held batches are
    appended to one raw file per fetch in a private temporary directory; at
    the end, the set is concatenated in memory only if that copy also fits in
    the budget. Otherwise ``score_fn`` receives read-only ``np.memmap``
    arrays of the files (valid only during the call; the pages it reads are
    page cache, which the kernel can reclaim). The directory is deleted after
    ``score_fn`` returns or raises, at the start of the next run, and when
    the inferencer is garbage collected or the interpreter exits.

    Args:
        fetches: tensor names to gather; all must have the same batch
            dimension in every batch.
        score_fn: ``score_fn(dict_of_arrays) -> dict[str, float]``.
        max_memory_mb: in-memory budget in MiB (> 0) before spilling to disk.
        tmpdir: where to create the spill directory (default: the system's
            temporary directory, ``$TMPDIR``).

    Example:

    >>> def score(out):
    ...     return {"val_mean_score": float(out["score"].mean())}
    >>> g = GatherOutputs(["score"], score)
    >>> g.before_inference()
    >>> g.on_fetches([np.array([0.5, 1.0])], 2); g.on_fetches([np.array([3.0])], 1)
    >>> g.after_inference()
    {'val_mean_score': 1.5}
    """

    def __init__(self, fetches: Sequence[str] | str, score_fn: Callable[[dict], Mapping[str, Any]],
                 *, max_memory_mb: float = 512, tmpdir: str | os.PathLike | None = None):
        self.fetches = tensor_names(fetches, "fetches")
        if len(set(self.fetches)) != len(self.fetches):
            raise ValueError(f"`fetches` lists a name twice: {self.fetches!r}")
        if not callable(score_fn):
            raise TypeError(
                "`score_fn` must be a function of a dict of arrays returning "
                f"{{name: scalar}}. Received: {score_fn!r}")
        if (isinstance(max_memory_mb, bool) or not isinstance(max_memory_mb, (int, float))
                or not math.isfinite(max_memory_mb) or max_memory_mb <= 0):
            raise ValueError(
                "`max_memory_mb` must be a positive number of MiB (outputs above it "
                f"are spilled to disk). Received: max_memory_mb={max_memory_mb!r}")
        self.score_fn = score_fn
        self.max_memory_mb = max_memory_mb
        self.max_memory_bytes = int(max_memory_mb * 2**20)
        self.tmpdir = None if tmpdir is None else os.fspath(tmpdir)
        self._spill_dir: str | None = None
        self._finalizer = None
        self._reset()

    # -- state --------------------------------------------------------------

    # A copy holds none of a run's spill files.
    _RUN_STATE = {**Inferencer._RUN_STATE, "_files": lambda: None, "_finalizer": lambda: None,
                  "_spill_dir": lambda: None}

    def _reset(self) -> None:
        self._pieces: list[list[np.ndarray]] = [[] for _ in self.fetches]
        self._specs: list[tuple[tuple, np.dtype]] | None = None
        self._held_bytes = 0
        self._num_samples = 0
        self._spilled_samples = 0
        self._files: list[Any] | None = None
        #: statistics of the last run (for tests and benchmarks)
        self.num_spills = 0
        self.peak_held_bytes = 0

    @property
    def spill_dir(self) -> str | None:
        """The temporary directory of the current run, if it spilled."""
        return self._spill_dir

    def _cleanup(self) -> None:
        files, self._files = self._files, None
        for f in files or []:
            try:
                f.close()
            except OSError:
                pass
        if self._finalizer is not None:
            self._finalizer()  # removes the directory (once)
            self._finalizer = None
        self._spill_dir = None

    def _before_inference(self) -> None:
        self._cleanup()  # a run that raised half-way may have left files
        self._reset()

    def _get_fetches(self) -> list[str]:
        return list(self.fetches)

    # -- per batch ----------------------------------------------------------

    def _on_fetches(self, results) -> None:
        arrays = [np.asarray(r) for r in results]
        n = _batch_length(self.fetches, arrays, "GatherOutputs")
        specs = [(a.shape[1:], a.dtype) for a in arrays]
        if self._specs is None:
            self._specs = specs
        elif specs != self._specs:
            for name, (shape, dtype), (shape0, dtype0) in zip(self.fetches, specs, self._specs):
                if shape != shape0 or dtype != dtype0:
                    raise ValueError(
                        f"GatherOutputs: {name!r} changed from per-example shape {shape0} "
                        f"{dtype0} to {shape} {dtype} between batches; the gathered arrays "
                        "are concatenated, so pad it to a fixed shape in the tower or gather "
                        "it with a custom Inferencer.")
        if n == 0:
            return
        # Own copies: views would keep the runner's whole multi-batch buffers
        # alive and make the memory accounting wrong.
        arrays = [a if a.flags.owndata and a.flags.c_contiguous else np.array(a, order="C")
                  for a in arrays]
        size = sum(a.nbytes for a in arrays)
        if self._held_bytes and self._held_bytes + size > self.max_memory_bytes:
            self._spill()
        for pieces, a in zip(self._pieces, arrays):
            pieces.append(a)
        self._held_bytes += size
        self._num_samples += n
        self.peak_held_bytes = max(self.peak_held_bytes, self._held_bytes)
        if self._held_bytes > self.max_memory_bytes:  # one batch above the budget
            self._spill()

    def _spill(self) -> None:
        """Append the held batches to the per-fetch files."""
        if self._files is None:
            for name, (_, dtype) in zip(self.fetches, self._specs):
                if dtype.hasobject:
                    raise ValueError(
                        f"GatherOutputs cannot spill {name!r} (dtype {dtype}, e.g. strings) "
                        f"to disk; it would exceed max_memory_mb={self.max_memory_mb}. "
                        "Raise max_memory_mb or fetch numeric tensors.")
            self._spill_dir = tempfile.mkdtemp(prefix="infer_callbacks_gather_", dir=self.tmpdir)
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._spill_dir, ignore_errors=True)
            self._files = [open(os.path.join(self._spill_dir, f"{i}.raw"), "wb")
                           for i in range(len(self.fetches))]
        for f, pieces in zip(self._files, self._pieces):
            for a in pieces:
                a.tofile(f)
            pieces.clear()
        self._spilled_samples = self._num_samples
        if self._held_bytes:
            self.num_spills += 1
        self._held_bytes = 0

    # -- end of run ---------------------------------------------------------

    def _gathered(self) -> dict[str, np.ndarray]:
        specs = self._specs or [((), np.dtype(np.float64))] * len(self.fetches)
        largest = max((sum(a.nbytes for a in pieces) for pieces in self._pieces), default=0)
        if self._files is None and self._held_bytes + largest > self.max_memory_bytes:
            # Concatenating would need one more copy of the largest fetch,
            # above the budget: spill instead, and hand out memmaps.
            self._spill()
        if self._files is None:
            out = {}
            for i, (name, (shape, dtype)) in enumerate(zip(self.fetches, specs)):
                pieces, self._pieces[i] = self._pieces[i], []
                out[name] = np.concatenate(pieces) if pieces else np.empty((0,) + shape, dtype)
                del pieces
            return out
        self._spill()
        for f in self._files:
            f.close()
        out = {}
        for i, (name, (shape, dtype)) in enumerate(zip(self.fetches, specs)):
            path = os.path.join(self._spill_dir, f"{i}.raw")
            full = (self._num_samples,) + shape
            if self._num_samples == 0 or dtype.itemsize == 0 or 0 in shape:
                out[name] = np.empty(full, dtype)
            else:
                out[name] = np.memmap(path, dtype=dtype, mode="r", shape=full)
        return out

    def _after_inference(self) -> dict[str, float]:
        try:
            gathered = self._gathered()
            scores = self.score_fn(gathered)
            del gathered
            return scores  # checked by Inferencer.after_inference
        finally:
            self._pieces = [[] for _ in self.fetches]
            self._held_bytes = 0
            self._cleanup()

    @property
    def num_samples(self) -> int:
        """How many samples the current (or last) run gathered."""
        return self._num_samples
