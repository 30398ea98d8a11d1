"""What every text scorer shares: lazy imports of the optional reference
libraries, the fetched values as Python strings, and the per-batch loop.

Hypotheses and references arrive as arrays of ``bytes`` (``tf.string``
values), of ``str``, as lists of strings (what ``generate=`` returns), or
as token ids with a ``decode`` function (applied to numbers only). References may be ``[B]`` (one per
example) or ``[B, R]`` (several per example).

Example:

>>> as_texts(np.array([b"caf\\xc3\\xa9", b"tea"], dtype=object), "label", "CorpusBLEU")
['café', 'tea']
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import numpy as np

from infer_callbacks.inferencers.base import Inferencer

__all__ = ["require", "as_texts", "TextScorer"]


def require(module: str, extra: str, who: str) -> Any:
    """``import module``, or an ``ImportError`` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{who} needs the `{module.split('.')[0]}` package, which is not installed. "
                          f"Install it with: pip install 'infer_callbacks[{extra}]'") from e


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (str, np.str_)):
        return str(value)
    raise TypeError(type(value).__name__)


def as_texts(values: Any, name: str, who: str, decode: Callable | None = None,
             multi: bool = False) -> list:
    """``values`` as a list of ``str`` (``multi``: a list of lists of ``str``,
    ``[B, R]`` arrays giving ``R`` references per example)."""
    if decode is not None and np.asarray(values).dtype.kind in "biuf":
        values = decode(values)  # token ids; text passes as it is
    if isinstance(values, (list, tuple)):
        values = np.array(values, dtype=object) if values else np.empty((0,), object)
    array = np.asarray(values)
    if array.dtype.kind in "biuf" and array.size:
        raise TypeError(
            f"{who}: {name!r} holds numbers ({array.dtype} {array.shape}), not text. Pass "
            f"decode=... (e.g. a tokenizer's detokenize) to turn token ids into strings, or have "
            f"the tower or generate= return strings.")
    if array.ndim == 0:
        raise ValueError(f"{who}: {name!r} must have one entry per example; received a scalar {array!r:.80}.")
    if array.ndim > (2 if multi else 1):
        raise ValueError(f"{who}: {name!r} must be [B]{' or [B, R]' if multi else ''} strings; "
                         f"received shape {array.shape}.")
    try:
        if array.ndim == 2:
            return [[_text(v) for v in row] for row in array]
        texts = [_text(v) for v in array.tolist()] if array.dtype.kind in "US" else [_text(v) for v in array]
    except TypeError as e:
        raise TypeError(f"{who}: {name!r} must hold strings (str or bytes); it holds {e}.") from None
    return [[t] for t in texts] if multi else texts


class TextScorer(Inferencer):
    """Base of the text scorers: fetches ``hypotheses`` and ``references``,
    hands each batch to :meth:`_update` as ``(hyps, refs, weights)`` (examples
    of zero sample weight left out) and reports :meth:`_compute` once."""

    multi_reference = True
    who = "TextScorer"

    def __init__(self, hypotheses: str, references: str, *, decode: Callable | None = None,
                 prefix: str = "validation"):
        for arg, value in (("hypotheses", hypotheses), ("references", references)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"`{arg}` must be a fetch name (a non-empty string). Received: {arg}={value!r}")
        if decode is not None and not callable(decode):
            raise TypeError(f"`decode` must be a function of a batch's values returning strings. "
                            f"Received: decode={decode!r}")
        self.hypotheses, self.references, self.decode, self.prefix = hypotheses, references, decode, prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}_{name}" if self.prefix else name

    def _get_fetches(self) -> list[str]:
        return [self.hypotheses, self.references]

    def _on_fetches(self, results) -> None:
        hyps = as_texts(results[0], self.hypotheses, self.who, self.decode)
        refs = as_texts(results[1], self.references, self.who, self.decode, multi=self.multi_reference)
        if len(hyps) != len(refs):
            raise ValueError(f"{self.who}: {len(hyps)} hypotheses ({self.hypotheses!r}) but {len(refs)} "
                             f"references ({self.references!r}) in one batch; give one per example.")
        weight = self._batch[3]
        if weight is not None and np.ndim(weight) == 1 and len(weight) == len(hyps):
            keep = np.flatnonzero(np.asarray(weight) > 0)
            if len(keep) < len(hyps):
                hyps, refs = [hyps[i] for i in keep], [refs[i] for i in keep]
            weight = np.asarray(weight, np.float64)[keep]
        else:
            weight = np.ones(len(hyps))
        if hyps:
            self._update(hyps, refs, weight)

    def _update(self, hyps: list[str], refs: list, weight: np.ndarray) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hypotheses!r}, {self.references!r})"
