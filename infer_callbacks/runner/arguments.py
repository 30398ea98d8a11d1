"""``InferenceRunner``'s positional arguments at construction: the input as
validation sets, the tower function; each error names the argument, the
value received and what would be valid (the keyword options are checked by
``options.py``)."""

from __future__ import annotations

from typing import Any, Mapping

from infer_callbacks.data.source import InputSource
from infer_callbacks.runner.sets import Combination, ValidationSet, check_set_names

__all__ = ["check_tower_func", "make_sets"]


def check_tower_func(tower_func: Any) -> None:
    if tower_func is not None and not callable(tower_func):
        raise TypeError(f"`tower_func` must be callable. Received: {tower_func!r}")


def make_sets(input: Any, infs: list, *, prefetch, batch_size, limit_batches,
              combine) -> tuple[list[ValidationSet], Combination | None]:
    """The runner's validation sets: one unnamed set, or one per key of a
    dict input (each with its own copy of the inferencers), and the
    combination of the named sets' results."""
    def source(value):
        return InputSource(value, prefetch=prefetch, batch_size=batch_size, limit_batches=limit_batches)

    if isinstance(input, Mapping):
        names = check_set_names(list(input))
        sets = ValidationSet.copies_for(names, [source(input[n]) for n in names], infs)
        return sets, (None if combine is None else Combination(combine, names))
    if combine is not None:
        raise ValueError("`combine` combines several named validation sets; pass `input` as a dict "
                         f"such as {{'clean': clean_ds, 'noisy': noisy_ds}}. Received: combine={combine!r} "
                         f"with a single input.")
    return [ValidationSet(None, source(input), infs)], None
