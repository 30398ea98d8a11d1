"""Deep copies of our callbacks: the configuration, never the run.

keras-tuner deep-copies every callback for each trial, as ``copy.deepcopy``
does Keras's own callbacks. A copy of one of ours:

* carries a deep copy of its configuration (inferencers, writers, monitored
  keys, schedules);
* shares what the user handed over and that must not be duplicated: the
  validation input (a ``tf.data.Dataset`` holds a graph and cannot be copied;
  a DataFlow may hold files or sockets);
* carries no run state: no model, no ``params``, no joined ``fit``, no
  traced step, no reports, fresh locks. Each class names its run state.

:func:`copy_callback` is the one helper; a class's ``__deepcopy__`` calls it
with the attributes to share and the run state to make anew.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Mapping

__all__ = ["copy_callback", "KERAS_RUN_STATE"]

# What Keras's ``Callback`` learns from a run (``set_model`` / ``set_params``).
KERAS_RUN_STATE: Mapping[str, Callable[[], Any]] = {"_model": lambda: None, "params": lambda: None}


def copy_callback(obj: Any, memo: dict, *, share: Iterable[str] = (),
                  fresh: Mapping[str, Callable[[], Any]] = {}) -> Any:
    """A deep copy of ``obj`` (call it from ``__deepcopy__(self, memo)``).

    Args:
        obj: the callback (or any object with a ``__dict__``) to copy.
        memo: the ``memo`` handed to ``__deepcopy__``.
        share: attributes the copy holds by reference (the user's input).
        fresh: run-state attributes, each set on the copy to what its
            zero-argument factory returns (an attribute ``obj`` lacks is
            left unset); Keras's ``_model`` and ``params`` start as ``None``. Every other attribute is deep-copied.

    Example:

    >>> import threading
    >>> class Counter:
    ...     def __init__(self, source):
    ...         self.source, self.count, self.lock = source, 0, threading.Lock()
    ...     def __deepcopy__(self, memo):
    ...         return copy_callback(self, memo, share=("source",),
    ...                              fresh={"count": int, "lock": threading.Lock})
    >>> data = [1, 2]
    >>> c = Counter(data); c.count = 5
    >>> d = copy.deepcopy(c)
    >>> (d.source is data, d.count, d.lock is c.lock)
    (True, 0, False)
    """
    share, fresh = frozenset(share), {**KERAS_RUN_STATE, **fresh}
    cls = type(obj)
    new = cls.__new__(cls)
    memo[id(obj)] = new
    state = new.__dict__
    for key, value in vars(obj).items():
        if key in fresh:
            continue
        state[key] = value if key in share else copy.deepcopy(value, memo)
    for key, make in fresh.items():
        if key in vars(obj):
            state[key] = make()
    return new
