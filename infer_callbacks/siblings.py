"""Where a callback meets the other callbacks of its run.

Keras's ``fit`` puts its callbacks into a ``keras.callbacks.CallbackList``
that it builds itself and never hands to them. Two behaviours of ``fit``'s own
``validation_data`` need that list, and ``fit`` offers no public hook for
either:

* every callback's ``on_epoch_end`` sees the validation results, whatever its
  place in the list (Keras validates before calling any ``on_epoch_end``);
* every callback gets ``on_test_begin`` / ``on_test_batch_*`` /
  ``on_test_end`` around the validation run (``SwapEMAWeights`` relies on it).

So a runner finds the list that holds it, once per ``fit`` (in
``on_train_begin``), and moves itself ahead of the callbacks that are not
validation producers. It finds the list through the garbage collector's
referrer graph (``gc.get_referrers``): the list object that holds the
callback, then the ``CallbackList`` whose public ``callbacks`` attribute is
that list. This reads no interpreter frame and no private Keras attribute,
and works for any container Keras might build as long as it keeps the
callbacks in a list attribute named ``callbacks`` (public since Keras 2).
If it finds nothing (a future Keras, or the runner used outside a list),
:func:`find` returns ``None`` and the caller warns once. The trainer host
builds its own ``CallbackList`` and orders it explicitly, so it never needs
this module's search.

This is the only module that looks at Keras's ``CallbackList``; the tests in
``tests/test_siblings.py`` pin its behaviour on the installed Keras.
"""

from __future__ import annotations

import gc
import types
import weakref
from typing import Any

import keras

__all__ = ["find", "callback_list_of", "is_producer", "promote", "unwrap"]

_SKIP = (types.FrameType, types.FunctionType, types.MethodType, types.CodeType, types.ModuleType)


def unwrap(callback: Any) -> list[Any]:
    """``callback`` and whatever it wraps (``.callback`` / ``.runner``), outermost first."""
    chain, seen = [], set()
    while callback is not None and id(callback) not in seen:
        chain.append(callback)
        seen.add(id(callback))
        callback = getattr(callback, "callback", None) or getattr(callback, "runner", None)
    return chain


def is_producer(callback: Any) -> bool:
    """Whether ``callback`` (or what it wraps) produces validation results."""
    return any(callable(getattr(c, "pop_reports", None)) for c in unwrap(callback))


def _owners(obj: Any) -> list[Any]:
    """Objects holding a reference to ``obj``: lists and instances (an
    instance whose attributes live in a ``__dict__`` is reached through it)."""
    out = []
    for ref in gc.get_referrers(obj):
        if isinstance(ref, _SKIP):
            continue
        if isinstance(ref, dict):
            out.extend(r for r in gc.get_referrers(ref)
                       if not isinstance(r, _SKIP) and getattr(r, "__dict__", None) is ref)
        else:
            out.append(ref)
    return out


_last_found: list = []  # a weak reference to the list found last


def _member_in(callback_list, callback) -> Any:
    for member in callback_list.callbacks:
        if any(c is callback for c in unwrap(member)):
            return member
    return None


def find(callback: keras.callbacks.Callback) -> tuple[keras.callbacks.CallbackList, Any] | None:
    """The ``CallbackList`` that holds ``callback`` and the member that
    stands for it there (``callback`` itself or a wrapper around it, such as
    a ``PeriodicTrigger``), or ``None``.

    The callbacks of one ``fit`` all ask in the same ``on_train_begin``: the
    list found last is remembered (weakly; a finished ``fit``'s list is gone
    with it) and checked first, so only the first of them searches."""
    last = _last_found[0]() if _last_found else None
    if last is not None and getattr(last, "model", None) is getattr(callback, "model", None):
        member = _member_in(last, callback)
        if member is not None:
            return last, member
    hit = _search(callback)
    if hit is not None:
        _last_found[:] = [weakref.ref(hit[0])]
    return hit


def _search(callback: keras.callbacks.Callback) -> tuple[keras.callbacks.CallbackList, Any] | None:
    frontier, seen = [callback], {id(callback)}
    for _ in range(3):  # callback, its wrapper, the wrapper's wrapper
        found, parents = [], []
        for member in frontier:
            for owner in _owners(member):
                if isinstance(owner, list):
                    for holder in _owners(owner):
                        if isinstance(holder, keras.callbacks.CallbackList) and holder.callbacks is owner:
                            found.append((holder, member))
                elif (isinstance(owner, keras.callbacks.Callback) and id(owner) not in seen
                      and member in unwrap(owner)[1:2]):
                    seen.add(id(owner))
                    parents.append(owner)
        if found:
            return _newest(found)
        frontier = parents
        if not frontier:
            return None
    return None


def _newest(found: list) -> tuple:
    """Among several lists (an old ``fit``'s list not yet collected), the
    one still running: collect garbage once and keep the survivors; of
    those, the one whose model is the callback's."""
    if len({id(h) for h, _ in found}) > 1:
        gc.collect()
        alive = [(h, m) for h, m in found if len(gc.get_referrers(h)) > 1]
        found = alive or found
        same_model = [(h, m) for h, m in found if getattr(h, "model", None) is getattr(m, "model", None)]
        found = same_model or found
    return found[-1]


def callback_list_of(callback: keras.callbacks.Callback) -> keras.callbacks.CallbackList | None:
    """The ``CallbackList`` that holds ``callback`` (or a wrapper of it), or ``None``."""
    hit = find(callback)
    return None if hit is None else hit[0]


def promote(callback_list: keras.callbacks.CallbackList, member: Any) -> None:
    """Move ``member`` right after the leading validation producers of
    ``callback_list``, keeping producers in their given order. Safe while
    ``CallbackList.on_train_begin`` iterates the list: only members already
    called move right."""
    cbs = callback_list.callbacks
    index = next((i for i, c in enumerate(cbs) if c is member), None)
    if index is None:
        return
    first = 0
    while first < index and is_producer(cbs[first]):
        first += 1
    if first < index:
        cbs.pop(index)
        cbs.insert(first, member)
