"""Where our callbacks meet Keras's ``CallbackList``: the run they share.

Keras's ``fit`` puts its callbacks into a ``keras.callbacks.CallbackList``
that it builds itself and never hands to them. Two behaviours of ``fit``'s own
``validation_data`` need that list, and ``fit`` offers no public hook for
either:

* every callback's ``on_epoch_end`` sees the validation results, whatever its
  place in the list (Keras validates before calling any ``on_epoch_end``);
* every callback gets ``on_test_begin`` / ``on_test_batch_*`` /
  ``on_test_end`` around the validation run (``SwapEMAWeights`` relies on it).

The mechanism, deterministic and independent of what else lives in the
process: ``CallbackList.set_model`` calls ``set_model`` on each of its
callbacks, in list order, before ``on_train_begin``. Each callback of this
package calls :func:`join` from its ``set_model``; :func:`join` reads the
*immediate caller's* frame: its ``self`` is the ``CallbackList`` (or a
wrapper such as ``PeriodicTrigger`` forwarding ``set_model``, whose own
caller is then read, at any depth; a subclass that extends ``set_model`` and
calls ``super().set_model(model)`` is looked through the same way). The list must hold
the callback (or its wrapper) in its public ``callbacks`` attribute; then the
callback joins that list's :class:`Run`, the explicit owner the callbacks of
one ``fit`` meet through (``Monitors`` find the runners' reports there, a
``MinSaver`` its ``ModelSaver``). Runs are kept in a table keyed weakly by
the list: a finished ``fit``'s run goes with its list.

When the caller is not a ``CallbackList`` (a callback driven by hand, or a
container this Keras does not build), :func:`join` returns ``None`` and the
callback warns once in ``on_train_begin`` (:func:`warn_unjoined`), naming
what will be missing and the fix. The explicit path needs no frame:
:func:`ordered_callbacks` returns the list with the producers first, and
``keras.callbacks.CallbackList(ordered_callbacks([...]), model=model)``
passed to ``fit`` is joined like ``fit``'s own list.

This is the only module that reads an interpreter frame or looks into a
``CallbackList``; ``tests/fit/test_keras_glue.py`` pins its behaviour on
the installed Keras.
"""

from __future__ import annotations

import sys
import threading
import warnings
import weakref
from typing import Any, Iterable

import keras

__all__ = ["Run", "join", "unwrap", "is_producer", "ordered_callbacks", "warn_unjoined"]

_runs: "weakref.WeakKeyDictionary[keras.callbacks.CallbackList, Run]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def unwrap(callback: Any) -> list[Any]:
    """``callback`` and whatever it wraps (``.callback`` / ``.runner``), outermost first."""
    chain, seen = [], set()
    while callback is not None and id(callback) not in seen:
        chain.append(callback)
        seen.add(id(callback))
        inner = getattr(callback, "callback", None)
        if inner is None:
            inner = getattr(callback, "runner", None)
        callback = inner if isinstance(inner, keras.callbacks.Callback) else None
    return chain


def is_producer(callback: Any) -> bool:
    """Whether ``callback`` (or what it wraps) produces validation results."""
    return any(callable(getattr(c, "pop_reports", None)) for c in unwrap(callback))


def ordered_callbacks(callbacks: Iterable[keras.callbacks.Callback]) -> list[keras.callbacks.Callback]:
    """``callbacks`` with the validation producers (runners, and wrappers of
    runners) first, each group in its given order: the explicit way to give
    every callback the results in ``on_epoch_end``.

    Example:

    ```python
    callbacks = ordered_callbacks([keras.callbacks.EarlyStopping("validation_loss", mode="min"),
                                   InferenceRunner(val_ds, ScalarStats("loss"))])
    model.fit(train_ds, callbacks=callbacks)
    ```
    """
    callbacks = list(callbacks)
    for c in callbacks:
        if not isinstance(c, keras.callbacks.Callback):
            raise TypeError(f"ordered_callbacks takes keras.callbacks.Callback objects. Received: {c!r}")
    return [c for c in callbacks if is_producer(c)] + [c for c in callbacks if not is_producer(c)]


class Run:
    """The callbacks of one ``CallbackList`` (one ``fit``, or one trainer
    host run) that joined it, and what they may do with the list."""

    def __init__(self, callback_list: keras.callbacks.CallbackList):
        self._list = weakref.ref(callback_list)
        self._members: list = []  # weak references, in joining order

    @property
    def callback_list(self) -> keras.callbacks.CallbackList | None:
        """The ``CallbackList`` (``None`` once it is gone)."""
        return self._list()

    def _add(self, callback: Any) -> None:
        if all(ref() is not callback for ref in self._members):
            self._members.append(weakref.ref(callback))

    def members(self) -> list:
        """Every callback in the list (looking through wrappers), in list order."""
        cblist = self.callback_list
        if cblist is None:
            return []
        return [c for member in list(cblist.callbacks) for c in unwrap(member)]

    def producers(self, exclude: Any = None) -> list:
        """The callbacks in the list that expose ``pop_reports()`` (the
        runners), in list order."""
        out = []
        for c in self.members():
            if c is not exclude and callable(getattr(c, "pop_reports", None)) and all(c is not o for o in out):
                out.append(c)
        return out

    def find(self, kind: type) -> list:
        """The callbacks in the list (through wrappers) of type ``kind``."""
        return [c for c in self.members() if isinstance(c, kind)]

    def promote(self, callback: Any) -> bool:
        """Move the member that stands for ``callback`` right after the
        leading validation producers, keeping producers in their given
        order. Safe while ``CallbackList.on_train_begin`` iterates the list:
        only members already called move right. ``False`` when the list no
        longer holds it."""
        cblist = self.callback_list
        if cblist is None:
            return False
        cbs = cblist.callbacks
        index = next((i for i, m in enumerate(cbs) if any(c is callback for c in unwrap(m))), None)
        if index is None:
            return False
        first = 0
        while first < index and is_producer(cbs[first]):
            first += 1
        if first < index:
            cbs.insert(first, cbs.pop(index))
        return True

    def fire(self, hook: str, *args) -> None:
        """Call ``hook`` (``on_test_begin``, ``on_test_end``, ...) on the whole list."""
        cblist = self.callback_list
        if cblist is not None:
            getattr(cblist, hook)(*args)


def _holds(cblist: Any, callback: Any) -> bool:
    members = getattr(cblist, "callbacks", None)
    if not isinstance(members, list):
        return False
    return any(c is callback for m in members for c in unwrap(m))


def join(callback: keras.callbacks.Callback, *, depth: int = 1) -> Run | None:
    """Join the run of the ``CallbackList`` that is calling ``callback``'s
    ``set_model`` (call it from ``set_model``; ``depth`` counts the frames
    between ``set_model`` and this call). ``None`` when no such list calls."""
    try:
        frame = sys._getframe(depth + 1)  # the caller of set_model
    except ValueError:
        return None
    inner = callback
    try:
        # A subclass extending ``set_model`` (``super().set_model(m)``):
        # its own frames stand between the list and this call.
        while frame is not None and frame.f_locals.get("self") is callback:
            frame = frame.f_back
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, keras.callbacks.CallbackList):
                if not _holds(owner, callback):
                    return None
                with _lock:
                    run = _runs.get(owner)
                    if run is None:
                        run = _runs[owner] = Run(owner)
                    run._add(callback)
                return run
            # A wrapper forwarding set_model (at any depth): read its caller in turn.
            if not isinstance(owner, keras.callbacks.Callback) or inner not in unwrap(owner)[1:]:
                return None
            inner, frame = owner, frame.f_back
            while frame is not None and frame.f_locals.get("self") is owner:
                frame = frame.f_back  # the wrapper's own helper frames (and its subclasses')
        return None
    finally:
        del frame


_warned: "weakref.WeakSet" = weakref.WeakSet()


def warn_unjoined(callback: Any, missing: str) -> None:
    """Warn once per callback that it met no ``CallbackList``, naming what
    will be ``missing`` and the fix."""
    if callback in _warned:
        return
    _warned.add(callback)
    warnings.warn(
        f"{callback!r} was not given its model by a keras.callbacks.CallbackList (it cannot see the other "
        f"callbacks of this run), so {missing}. Pass it to model.fit(callbacks=[...]) (or a "
        "keras.callbacks.CallbackList), and put the runners first, e.g. "
        "callbacks=infer_callbacks.ordered_callbacks([...]).", RuntimeWarning, stacklevel=3)
