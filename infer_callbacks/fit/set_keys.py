"""Where a named validation set's name goes in a result's key: runners
write such keys (:mod:`infer_callbacks.runner.sets`) and monitors group by
them, so the rule lives here, below both.

A result key ``validation_loss`` of the set ``clean`` becomes
``validation_clean_loss`` (the name goes after a leading ``validation_`` or
``val_``; any other key is prefixed: ``clean_<key>``).

Example:

>>> set_key("validation_loss", "clean"), set_key("accuracy", "clean")
('validation_clean_loss', 'clean_accuracy')
>>> split_set_key("validation_clean_loss", ["clean"])
('validation_loss', 'clean')
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["set_key", "split_set_key"]

_PREFIXES = ("validation_", "val_")


def set_key(key: str, name: str | None) -> str:
    """``key`` of the set ``name`` (``None``: the only set, key unchanged)."""
    if name is None:
        return key
    for prefix in _PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            return f"{prefix}{name}_{key[len(prefix):]}"
    return f"{name}_{key}"


def split_set_key(key: str, names: Sequence[str]) -> tuple[str, str] | None:
    """``(unnamed key, set name)`` when ``key`` is :func:`set_key` of one of
    ``names``, else ``None``: ``split_set_key("validation_clean_loss",
    ["clean"]) == ("validation_loss", "clean")``."""
    for name in names:
        for prefix in _PREFIXES:
            head = f"{prefix}{name}_"
            if key.startswith(head) and len(key) > len(head):
                return prefix + key[len(head):], name
        if key.startswith(name + "_") and len(key) > len(name) + 1:
            return key[len(name) + 1:], name
    return None
