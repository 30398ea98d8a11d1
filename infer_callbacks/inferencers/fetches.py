"""The tensor names an inferencer fetches: the names a built-in takes in its
``__init__`` (:func:`tensor_names`) and the check of what ``_get_fetches()``
returns (:func:`check_fetches`), with errors that say what to return instead.

Example:

>>> tensor_names("loss", "names")
['loss']
>>> check_fetches(["loss", "wrong-top1"], "ScalarStats._get_fetches()")
['loss', 'wrong-top1']
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["tensor_names", "check_fetches", "looks_like_tensor"]


def tensor_names(names: str | Sequence[str], arg: str) -> list[str]:
    """A tensor name or a non-empty list of names, as a list; a ``ValueError``
    naming the argument ``arg`` otherwise (for the built-ins' ``__init__``)."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"`{arg}` must be a tensor name or a non-empty list of names. Received: {names!r}")
    return names


def looks_like_tensor(value: Any) -> bool:
    """Whether ``value`` is a TensorFlow or Keras tensor (or a TF1 op): what
    tensorpack code returned from ``_get_fetches`` instead of a name."""
    module = type(value).__module__ or ""
    return module.split(".")[0] in ("tensorflow", "keras", "tf_keras") or (
        hasattr(value, "dtype") and hasattr(value, "op") and hasattr(value, "name"))


def check_fetches(fetches: Any, who: str) -> list[str]:
    """``fetches`` (what ``who`` returned) as a non-empty list of tensor names;
    a ``TypeError`` or ``ValueError`` naming the bad value otherwise."""
    if isinstance(fetches, str) or not isinstance(fetches, (list, tuple)):
        hint = " (a list, even for one name)" if isinstance(fetches, str) else ""
        raise TypeError(f"{who} must return a list of tensor names{hint}. It returned {fetches!r:.200}.")
    if not fetches:
        raise ValueError(f"{who} returned an empty list; an inferencer needs at least one tensor name.")
    for name in fetches:
        if looks_like_tensor(name):
            raise TypeError(
                f"{who} returned a tensor or op ({name!r:.120}), a TF1 habit that cannot carry "
                "over: return the tensor names as strings, e.g. 'wrong-top1'; compute extra "
                "tensors in the tower function.")
        if not isinstance(name, str) or not name:
            raise TypeError(f"{who} must return non-empty strings. It returned {name!r} in {list(fetches)!r}.")
    return list(fetches)
