"""What an inferencer reports, as the runner takes it: ``{str: float}``.

``_after_inference`` may return anything; a value that is not one number
never stops training. :func:`scalar_results` keeps the numbers, spreads an
array over one key per element (:func:`element_keys`) and drops the rest,
each with a warning naming the inferencer and the key.

Example:

>>> import warnings
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore")
...     scalar_results({"acc": np.float32(0.5), "per_class": np.array([1, 2]), "note": "x"}, "inf")
{'acc': 0.5, 'per_class_0': 1.0, 'per_class_1': 2.0}
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from infer_callbacks._util import numeric_array

__all__ = ["element_keys", "scalar_results"]


def element_keys(key: str, shape: tuple) -> list[str]:
    """Keys for the elements of a non-scalar result: ``key_<i>`` (``key_<i>_<j>``
    for a matrix), the same convention as :class:`~infer_callbacks.KerasMetric`.

    Example:

    >>> element_keys("recall", (2,))
    ['recall_0', 'recall_1']
    """
    return [f"{key}_{'_'.join(str(i) for i in index)}" for index in np.ndindex(*shape)]


def scalar_results(results: Any, who: str, *, stacklevel: int = 3) -> dict[str, float]:
    """``results`` (what ``who``'s ``_after_inference`` returned) as
    ``{str: float}``; ``None`` is no results. Warns, never raises, over a
    value: a non-dict reports nothing, a non-string key is reported as its
    ``str``, an array as one key per element, a non-number is dropped."""
    if results is None:
        return {}
    if not hasattr(results, "items"):
        warnings.warn(f"{who} returned {type(results).__name__} {results!r:.200}, not a dict of "
                      "{name: scalar}; nothing is reported.", UserWarning, stacklevel=stacklevel)
        return {}
    clean: dict[str, float] = {}
    for key, value in results.items():
        if not isinstance(key, str):
            warnings.warn(f"{who} returned the non-string key {key!r}; reported as {str(key)!r}.",
                          UserWarning, stacklevel=stacklevel)
            key = str(key)
        clean.update(_scalars(key, value, who, stacklevel + 1))
    return clean


def _scalars(key: str, value: Any, who: str, stacklevel: int) -> dict[str, float]:
    array = numeric_array(value)
    if array is None:
        warnings.warn(f"{who}[{key!r}] is not a number ({type(value).__name__} {value!r:.80}); "
                      "it is not reported.", UserWarning, stacklevel=stacklevel)
        return {}
    if array.shape == ():
        return {key: float(array)}
    keys = element_keys(key, array.shape)
    warnings.warn(f"{who}[{key!r}] has shape {array.shape}, not one number; reported as one key "
                  f"per element: {keys[0]!r}, ... Reduce it or name the elements to silence this.",
                  UserWarning, stacklevel=stacklevel)
    return dict(zip(keys, (float(v) for v in array.ravel())))
