"""Several named validation sets in one runner: their keys and their
combination.

| who | owns |
| --- | --- |
| :class:`ValidationSet` | one named input and its own inferencers |
| :func:`set_key` | where a set's name goes in a result's key (``fit/set_keys.py``, which the monitors read too) |
| :class:`Combination` | one more key per result, from every set's value |
| the runner | when the sets run (one after another, in one run) |

A result key ``validation_loss`` of the set ``clean`` becomes
``validation_clean_loss`` (the name goes after a leading ``validation_`` or
``val_``; any other key is prefixed: ``clean_<key>``). With a combination,
the unnamed key (``validation_loss``) holds the combination of the sets'
values, for ``EarlyStopping``, ``ModelCheckpoint``, ``MinSaver`` and tuners.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from infer_callbacks.fit.set_keys import set_key, split_set_key

__all__ = ["ValidationSet", "set_key", "split_set_key", "Combination", "check_set_names"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")
def check_set_names(names: Sequence[Any]) -> list[str]:
    """The set names, checked: non-empty strings of letters, digits, ``_``
    and ``-``, none a prefix of another followed by ``_`` (their keys could
    collide: ``a`` + ``b_loss`` and ``a_b`` + ``loss``)."""
    names = list(names)
    if not names:
        raise ValueError("`input` is an empty dict: pass at least one named validation set, e.g. "
                         "{'clean': clean_ds, 'noisy': noisy_ds}.")
    for name in names:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"Validation set names must be strings of letters, digits, '_' and '-' "
                             f"(they become part of result keys). Received: {name!r}")
    for a in names:
        for b in names:
            if a != b and b.startswith(a + "_"):
                raise ValueError(f"The validation set names {a!r} and {b!r} could give the same result "
                                 f"key ({set_key('validation_' + b[len(a) + 1:] + '_x', a)!r}); rename "
                                 "one so that neither is the other's prefix followed by '_'.")
    return names


class ValidationSet:
    """One named input (an :class:`~infer_callbacks.data.source.InputSource`)
    and its own inferencers."""

    def __init__(self, name: str | None, input: Any, infs: list):
        self.name, self.input, self.infs = name, input, list(infs)

    @classmethod
    def copies_for(cls, names: Sequence[str], inputs: Sequence[Any], infs: list) -> list["ValidationSet"]:
        """One set per name; the first keeps ``infs`` (the objects the user
        holds), each other set gets a deep copy of them."""
        return [cls(name, source, infs if i == 0 else copy.deepcopy(infs))
                for i, (name, source) in enumerate(zip(names, inputs))]

    def key(self, key: str) -> str:
        return set_key(key, self.name)

    def rename(self, values: Mapping[str, Any]) -> dict:
        return {self.key(k): v for k, v in values.items()}

    @property
    def label(self) -> str:
        return "" if self.name is None else f" [{self.name}]"


class Combination:
    """How several sets' values of one result make the combined value.

    Args:
        how: ``'mean'`` (of the sets' values), ``'min'``, ``'max'``, a dict
            ``{set name: weight}`` (the weighted sum), or a function
            ``f({set name: value}) -> float``.
        names: the sets' names.
    """

    def __init__(self, how: str | Mapping[str, float] | Callable[[dict], float], names: Sequence[str]):
        if isinstance(how, str):
            if how not in ("mean", "min", "max"):
                raise ValueError("`combine` must be 'mean', 'min', 'max', a dict {set name: weight} or a "
                                 f"function of {{set name: value}}. Received: combine={how!r}")
        elif isinstance(how, Mapping):
            unknown = sorted(set(how) - set(names))
            missing = sorted(set(names) - set(how))
            if unknown or missing:
                raise ValueError(f"`combine` weights must name every validation set {list(names)}. "
                                 f"Unknown: {unknown}; missing: {missing}.")
            bad = {k: w for k, w in how.items() if isinstance(w, bool) or not isinstance(w, (int, float))}
            if bad:
                raise TypeError(f"`combine` weights must be numbers. Received: {bad}")
        elif not callable(how):
            raise TypeError("`combine` must be 'mean', 'min', 'max', a dict {set name: weight} or a "
                            f"function of {{set name: value}}. Received: {how!r}")
        self.how, self.names = how, list(names)

    def __call__(self, per_set: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
        """``{key: combined value}`` for every key that every set reports."""
        common = [k for k in per_set[self.names[0]] if all(k in per_set[n] for n in self.names)]
        out = {}
        for key in common:
            values = {n: float(per_set[n][key]) for n in self.names}
            if self.how == "mean":
                out[key] = float(np.mean(list(values.values())))
            elif self.how == "min":
                out[key] = min(values.values())
            elif self.how == "max":
                out[key] = max(values.values())
            elif isinstance(self.how, Mapping):
                out[key] = float(sum(self.how[n] * v for n, v in values.items()))
            else:
                out[key] = float(self.how(values))
        return out

    def __repr__(self) -> str:
        return f"Combination({self.how!r})"
