"""Evaluation by generation: ``InferenceRunner(..., generate=fn)``.

``fn(model, inputs)`` runs on the host for every batch (``inputs``: the
batch's ``x``, numpy, ``tf.string`` values as Python ``str``) and returns
named outputs, ``{name: [B] strings or [B, ...] token ids}`` (one value
alone is named ``generated``). The inferencers that fetch one of these
names get them next to the batch's inputs, labels and sample weights,
taken on the host straight from the input (so string labels reach them as
strings, on every backend); the other inferencers run through the engine
as usual.

| who | owns |
| --- | --- |
| :class:`Generation` | which inferencers it feeds, the model it generates with, its pass over a set |
| ``passes.run_sets`` | calling that pass next to the engine's, per set |
| the runner | ``generate=``; at an asynchronous launch, :meth:`Generation.take` |

With ``asynchronous=True`` the background run generates with a private
copy of the model (``copy.deepcopy``, made once before training) holding
the snapshot's weights, so decoding never stalls training.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
import weakref
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from infer_callbacks.runner.dispatch import call_hook
from infer_callbacks.towers.names import input_paths, get_path, key_in

__all__ = ["Generation", "host_batches", "GENERATED"]

GENERATED = "generated"  # the name of a single value fn returns


def _host_value(t: Any) -> Any:
    value = t.numpy() if hasattr(t, "numpy") else np.asarray(t)
    if isinstance(value, np.ndarray) and value.dtype == object:
        flat = [v.decode("utf-8") if isinstance(v, bytes) else v for v in value.ravel()]
        out = np.empty(len(flat), object)
        out[:] = flat
        return out.reshape(value.shape)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def host_batches(source) -> Any:
    """The batches of an :class:`~infer_callbacks.data.source.InputSource`, on
    the host, as numpy (strings as ``str``), in dataset order."""
    for element in source.dataset:
        yield tf.nest.map_structure(_host_value, element)


def _outputs(value: Any, rows: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        value = {GENERATED: value}
    out = {}
    for name, v in value.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"generate= must return a dict with string keys. Received the key {name!r}.")
        if not isinstance(v, (list, tuple)):
            v = _host_value(v)
        if np.ndim(v) == 0 or len(v) != rows:
            raise ValueError(f"generate=: output {name!r} must have one entry per example ({rows} in this "
                             f"batch); it has {('shape ' + str(np.shape(v))) if np.ndim(v) else 'no batch axis'}.")
        out[name] = list(v) if isinstance(v, tuple) else v
    return out


def _rows(batch: Any) -> int:
    for leaf in tf.nest.flatten(batch):
        if np.ndim(leaf) >= 1:
            return len(leaf)
    return 0


@dataclasses.dataclass
class HostPass:
    batches: int = 0
    samples: int = 0


class Generation:
    """``generate=`` bound to a model and the runner's sets.

    Args:
        fn: the user's ``fn(model, inputs)``.
        model: the model to generate with (a copy is made for ``asynchronous``).
        sets: the runner's validation sets; the first batch of the first set
            is generated once, now, to learn the output names and fail
            before training.
        keras_default, input_names: how the batch elements are named (as
            the runner's tower names them: ``input``, ``label``,
            ``sample_weight`` for a Keras model's batches).
    """

    def __init__(self, fn: Callable, model: Any, sets: Sequence, *, keras_default: bool,
                 input_names: Sequence[str] | None, asynchronous: bool):
        self.fn = fn
        self._model = weakref.ref(model) if model is not None else (lambda: None)
        self._keras_default, self._input_names = keras_default, input_names
        batches = host_batches(sets[0].input)
        first = next(batches)
        batches.close()
        self.names = list(_outputs(fn(model, self._inputs(first)), _rows(first)))
        self.host: dict[int, list] = {}
        for s in sets:
            paths = self._paths(s)
            mine = [inf for inf in s.infs if any(n in self.names for n in inf.get_fetches())]
            for inf in mine:
                unknown = [n for n in inf.get_fetches() if n not in self.names and key_in(n, paths) is None]
                if unknown:
                    raise ValueError(
                        f"{inf!r} fetches the generated output(s) {[n for n in inf.get_fetches() if n in self.names]} "
                        f"and {unknown}, which generation cannot give: inferencers of generated outputs "
                        f"see {sorted(self.names) + sorted(paths)}. Fetch tower outputs with another inferencer.")
            self.host[id(s)] = mine
        self.copy = None
        if asynchronous:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "compile() was not called" on a copy
                try:
                    self.copy = copy.deepcopy(model)
                except Exception as e:
                    raise ValueError(f"asynchronous=True with generate= generates with a copy of the model, "
                                     f"but the model cannot be copied ({type(e).__name__}: {e}). Pass "
                                     "asynchronous=False.") from e
            if hasattr(model, "sampler") and hasattr(self.copy, "sampler"):
                self.copy.sampler = model.sampler  # keras-hub's compile(sampler=...) is not serialized
        self._weights: Callable[[], list] | None = None

    def _paths(self, s) -> dict[str, tuple]:
        spec = s.input.dataset.element_spec
        return input_paths(spec, None, self._keras_default, self._input_names)

    def _inputs(self, batch: Any) -> Any:
        return batch[0] if isinstance(batch, tuple) else batch

    def host_infs(self, s) -> list:
        return self.host.get(id(s), [])

    def engine_infs(self, s) -> list:
        mine = self.host_infs(s)
        return [inf for inf in s.infs if not any(inf is m for m in mine)]

    def take(self, model: Any, snapshot: Any) -> None:
        """At an asynchronous launch (training paused): the weights the next
        background pass generates with: the snapshot's, read in the
        background, or a host copy of the model's now."""
        if self.copy is None:
            return
        if snapshot is not None:
            self._weights = snapshot.numpy
        else:
            weights = model.get_weights()
            self._weights = lambda: weights

    def _model_for(self, background) -> Any:
        if background is None or self.copy is None:
            return self._model()
        if self._weights is not None:
            self.copy.set_weights(self._weights())
            self._weights = None
        return self.copy

    def run_pass(self, s, plan, ctx, *, hooks: Callable, progress, background) -> HostPass:
        """Generate for every batch of set ``s`` and feed the inferencers of ``plan``."""
        model = self._model_for(background)
        paths = self._paths(s)
        for inf, _ in plan:
            call_hook(inf, "set_run_context", ctx)
            call_hook(inf, "before_inference")
        stats = HostPass()
        for batch in host_batches(s.input):
            if background is not None and background.should_stop:
                raise RuntimeError("The background validation was cancelled.")
            hooks("on_test_batch_begin", stats.batches)
            rows = _rows(batch)
            try:
                values = _outputs(self.fn(model, self._inputs(batch)), rows)
            except Exception as e:
                e.add_note(f"(raised by generate= on validation batch {stats.batches + 1} of {s.input.description})")
                raise
            weight = None
            key = key_in("sample_weight", paths)
            if key is not None:
                weight = np.asarray(get_path(batch, paths[key]), np.float64).reshape(-1)
            for inf, names in plan:
                missing = [n for n in names if n in self.names and n not in values]
                if missing:
                    raise ValueError(f"generate= returned {sorted(values)} on validation batch "
                                     f"{stats.batches + 1}, without {missing} (returned on the first batch).")
                fetched = [values[n] if n in values else get_path(batch, paths[key_in(n, paths)]) for n in names]
                try:
                    inf.on_fetches(fetched, rows, sample_weight=weight)
                except Exception as e:
                    e.add_note(f"(raised by inferencer {inf!r} on generated batch {stats.batches + 1} of "
                               f"{s.input.description})")
                    raise
            stats.batches += 1
            stats.samples += rows
            hooks("on_test_batch_end", stats.batches - 1, {})
            progress.update(1)
        return stats
