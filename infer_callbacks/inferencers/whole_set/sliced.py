"""``Sliced``: any inferencer per slice of the data, in one pass.

Each example's slice comes from a fetched tag (a language, a source, a
length bucket): the wrapped inferencer is copied once per slice seen, and
every batch is cut by slice and handed to the copies (rows in dataset
order, their sample weights with them), next to the overall inferencer.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Callable

import numpy as np

from infer_callbacks.inferencers.base import Inferencer

__all__ = ["Sliced", "slice_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def slice_name(value: Any) -> str:
    """A tag value as the slice's name in result keys (bytes decoded, other
    characters than letters, digits, ``_.-`` replaced by ``_``)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    elif isinstance(value, (np.bool_, bool)):
        value = str(bool(value)).lower()
    elif isinstance(value, np.generic):
        value = value.item()
    return _UNSAFE.sub("_", str(value)) or "_"


class Sliced(Inferencer):
    """Runs ``inferencer`` on every slice of the validation set, and overall.

    A result ``validation_auc`` of the slice ``en`` is reported as
    ``validation_auc/en`` (``/`` groups them in TensorBoard); with
    ``overall=True`` the unsliced ``validation_auc`` is reported too.
    Whole-set inferencers stay exact per slice (each slice's copy sees all
    of its examples); the exact ``(num, den)`` pairs of the Keras tower are
    per batch, so a copy averages per-example values instead (weighted by
    the sample weights, as Keras metrics).

    Args:
        inferencer: the inferencer to slice (copied per slice; with
            ``overall=True`` the object itself gives the overall value).
        by: the fetch name of a per-example tag ``[B]`` (strings, bytes,
            ints, bools).
        slice_fn: optional, maps the tag values ``[B]`` of a batch to slice
            values ``[B]`` (e.g. length buckets).
        overall: also report the unsliced values.
        max_slices: the most distinct slices before an error (a tag that
            is not categorical would otherwise make one copy per example).

    Example:

    >>> from infer_callbacks.inferencers.whole_set.text import ExactMatch
    >>> s = Sliced(ExactMatch("pred", "label"), by="lang")
    >>> s.before_inference()
    >>> s.on_fetches([["a", "b", "c"], ["a", "x", "c"], np.array([b"en", b"de", b"de"])], 3)
    >>> s.after_inference()
    {'validation_exact_match': 0.6666666666666666, 'validation_exact_match/en': 1.0, 'validation_exact_match/de': 0.5}
    """

    def __init__(self, inferencer: Inferencer, by: str, *, slice_fn: Callable | None = None,
                 overall: bool = True, max_slices: int = 1000):
        if not isinstance(inferencer, Inferencer):
            raise TypeError(f"`inferencer` must be an infer_callbacks.Inferencer. Received: {inferencer!r}")
        if not isinstance(by, str) or not by:
            raise ValueError(f"`by` must be the fetch name of a per-example tag. Received: by={by!r}")
        if slice_fn is not None and not callable(slice_fn):
            raise TypeError(f"`slice_fn` must be a function of the tag values. Received: slice_fn={slice_fn!r}")
        if isinstance(max_slices, bool) or not isinstance(max_slices, int) or max_slices < 1:
            raise ValueError(f"`max_slices` must be a positive int. Received: max_slices={max_slices!r}")
        self.inferencer, self.by, self.slice_fn = inferencer, by, slice_fn
        self.overall, self.max_slices = bool(overall), max_slices
        self._inner_fetches = inferencer.get_fetches()
        self._slices: dict[str, Inferencer] = {}

    _RUN_STATE = {**Inferencer._RUN_STATE, "_slices": dict}

    def _get_fetches(self) -> list[str]:
        return self._inner_fetches + ([self.by] if self.by not in self._inner_fetches else [])

    def result_names(self) -> list[str] | None:
        return None  # the slices are known only from the data

    def setup_run(self, ctx) -> None:
        super().setup_run(ctx)
        self.inferencer.setup_run(ctx)

    def set_run_context(self, ctx) -> None:
        super().set_run_context(ctx)
        self.inferencer.set_run_context(ctx)

    def _setup_graph(self) -> None:
        pass

    def _before_train(self) -> None:
        self.inferencer.before_train()

    def _after_train(self) -> None:
        self.inferencer.after_train()

    def _before_inference(self) -> None:
        self._slices = {}
        if self.overall:
            self.inferencer.before_inference()

    def _slice(self, name: str) -> Inferencer:
        inf = self._slices.get(name)
        if inf is None:
            if len(self._slices) >= self.max_slices:
                raise ValueError(f"Sliced: {self.by!r} gave more than max_slices={self.max_slices} distinct "
                                 f"slices (the last: {name!r}). Bucket it with slice_fn=, or raise max_slices.")
            inf = self._slices[name] = copy.deepcopy(self.inferencer)
            if self._run_context is not None:
                inf.setup_run(self._run_context)
            inf.before_inference()
        return inf

    def _on_fetches(self, results) -> None:
        num_samples, _, weight = self.batch_extras()
        inner = list(results[:len(self._inner_fetches)])
        tags = np.asarray(results[self._get_fetches().index(self.by)])
        if self.overall:
            self.inferencer.on_fetches(inner, num_samples, exact=self._batch[2], sample_weight=weight)
        if tags.ndim == 2 and tags.shape[1] == 1:
            tags = tags[:, 0]
        if tags.ndim != 1:
            raise ValueError(f"Sliced: the tag {self.by!r} must be [B] (one value per example); "
                             f"received shape {tags.shape}.")
        if self.slice_fn is not None:
            count = len(tags)
            tags = np.asarray(self.slice_fn(tags))
            if tags.shape != (count,):
                raise ValueError(f"Sliced: slice_fn must return one slice per example; it returned "
                                 f"shape {tags.shape}.")
        names = [slice_name(v) for v in tags.tolist()] if tags.dtype.kind in "US" else \
            [slice_name(v) for v in tags]
        index: dict[str, int] = {}
        codes = np.array([index.setdefault(n, len(index)) for n in names], dtype=np.int64)
        for name, code in index.items():
            rows = np.flatnonzero(codes == code)
            part = []
            for fetch, value in zip(self._inner_fetches, inner):
                if isinstance(value, list):
                    part.append([value[i] for i in rows])
                elif np.ndim(value) >= 1 and len(value) == len(tags):
                    part.append(np.asarray(value)[rows])
                else:
                    raise ValueError(f"Sliced: {fetch!r} has no row per example (shape {np.shape(value)}, "
                                     f"{len(tags)} examples); only per-example fetches can be sliced.")
            self._slice(name).on_fetches(part, len(rows), sample_weight=None if weight is None
                                         else np.asarray(weight)[rows])

    def _after_inference(self) -> dict[str, float]:
        out = dict(self.inferencer.after_inference()) if self.overall else {}
        for name, inf in self._slices.items():
            out.update({f"{key}/{name}": value for key, value in inf.after_inference().items()})
        return out

    def monitor_only_results(self) -> dict[str, float]:
        return self.inferencer.monitor_only_results() if self.overall else {}

    def __repr__(self) -> str:
        return f"Sliced({self.inferencer!r}, by={self.by!r})"
