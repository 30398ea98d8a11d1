"""Comparing the variables a model wants with those a file has, and the
error that lists the difference (shared by checkpoints and Keras weights files)."""

from __future__ import annotations

import warnings

import tensorflow as tf

__all__ = ["CheckpointMismatchError", "check_match"]

_MAX_LISTED = 20


class CheckpointMismatchError(ValueError):
    """The checkpoint and the model do not hold the same variables.

    Attributes:
        missing: names of the model's variables the checkpoint lacks.
        extra: names in the checkpoint the model does not have.
        mismatched: names whose shape or dtype differ.
    """

    def __init__(self, message: str, missing: list[str], extra: list[str], mismatched: list[str]):
        super().__init__(message)
        self.missing, self.extra, self.mismatched = missing, extra, mismatched


def check_match(source: str, want: dict, have: dict, *, ignore_mismatch: bool,
                labels: dict | None = None) -> set[str]:
    """Compare ``want`` (the model's ``name -> (shape, dtype)``) with ``have``
    (the file's). Raise :class:`CheckpointMismatchError` listing what is
    missing, extra and mis-shaped, or with ``ignore_mismatch`` warn and
    return the names not to restore."""
    missing = [n for n in want if n not in have]
    extra = sorted(n for n in have if n not in want)
    mismatched = [n for n in want if n in have and (
        tuple(have[n][0]) != tuple(want[n][0]) or tf.as_dtype(have[n][1]) != tf.as_dtype(want[n][1]))]
    if not (missing or extra or mismatched):
        return set()
    labels = labels or {}
    matched = len(want) - len(missing) - len(mismatched)
    lines = [f"{source} does not match the model: {matched} of {len(want)} variables match."]

    def section(title, items, fmt):
        if items:
            lines.append(f"  {len(items)} {title}:")
            lines.extend("    " + fmt(n) for n in items[:_MAX_LISTED])
            if len(items) > _MAX_LISTED:
                lines.append(f"    ... and {len(items) - _MAX_LISTED} more")

    def spec(shape_dtype):
        return f"shape={tuple(shape_dtype[0])} {tf.as_dtype(shape_dtype[1]).name}"

    def label(n):
        return f"{n} ({labels[n]})" if n in labels and labels[n] != n else n

    section("variables missing from the checkpoint", missing, lambda n: f"{label(n)}  {spec(want[n])}")
    section("shape/dtype mismatches", mismatched,
            lambda n: f"{label(n)}  model: {spec(want[n])}, checkpoint: {spec(have[n])}")
    section("extra checkpoint entries", extra, lambda n: f"{n}  {spec(have[n])}")
    message = "\n".join(lines)
    if not ignore_mismatch:
        raise CheckpointMismatchError(
            message + "\nPass ignore_mismatch=True to restore the matching variables and only "
            "warn about the rest.", missing, extra, mismatched)
    warnings.warn(message + "\nRestored the matching variables only (ignore_mismatch=True).",
                  stacklevel=3)
    return set(missing) | set(mismatched)
