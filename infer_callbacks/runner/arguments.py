"""Checks of ``InferenceRunner``'s arguments, at construction: each error
names the argument, the value received and what would be valid."""

from __future__ import annotations

from typing import Any, Mapping

from infer_callbacks.data.source import InputSource
from infer_callbacks.runner.sets import Combination, ValidationSet, check_set_names

__all__ = ["check_options", "make_sets"]


def _positive_int_or_none(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"`{name}` must be a positive integer or None. Received: {name}={value!r}")


def check_options(*, tower_func, steps_per_execution, on_nonfinite, tower_name, keras_names) -> None:
    _positive_int_or_none("steps_per_execution", steps_per_execution)
    if tower_func is not None and not callable(tower_func):
        raise TypeError(f"`tower_func` must be callable. Received: {tower_func!r}")
    if on_nonfinite not in ("warn", "raise"):
        raise ValueError("`on_nonfinite` must be 'warn' (report NaN/inf and go on) or 'raise'. "
                         f"Received: on_nonfinite={on_nonfinite!r}")
    if tower_name is not None and not isinstance(tower_name, str):
        raise TypeError(f"`tower_name` must be a string. Received: {tower_name!r}")
    if not isinstance(keras_names, bool):
        raise TypeError(f"`keras_names` must be True or False. Received: keras_names={keras_names!r}")


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
