"""The PyTorch engine's tower: ``fn(values, batch) -> {name: tensor}`` for
the requested fetch names, run eagerly without autograd.

The tower function (the user's, written with ``keras.ops``, or the default
Keras tower) reads the model's variables as they are, or, given ``values``
(an asynchronous run's snapshot, a copy on another device), under
``keras.StatelessScope``, which maps each variable to its value for this
thread only: training in another thread keeps reading the variables.

Names resolve as on the other backends (``towers/spec.py``): a key of the
tower's dict, then an input of the batch; ``name`` and ``name:0`` alike.
PyTorch has no graph of named ops, so a name must be a key or an input.

| who | owns |
| --- | --- |
| :class:`TorchTower` | the scope (``keras.StatelessScope``, ``keras.device``, ``TowerContext``), the fetch names, the unknown-name error |
| ``step.TorchStep`` | batches in, numpy out, ``torch.no_grad`` |
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import keras
import torch

from infer_callbacks.towers.names import get_path, input_paths, key_in, no_labels_hint
from infer_callbacks.towers.spec import (SAMPLE_WEIGHT_KEY, TowerContext, UnknownFetchError, call_tower,
                                         check_fetch_name, exact_keys)

__all__ = ["TorchTower"]


def _as_dict(out: Any) -> dict:
    if out is None:
        return {}
    if isinstance(out, dict):
        return dict(out)
    flat = keras.tree.flatten(out)
    return {"output": flat[0]} if len(flat) == 1 else {f"output_{i}": t for i, t in enumerate(flat)}


class TorchTower:
    """The requested fetches of ``tower_func``, eagerly, on one batch.

    Args:
        tower_func: ``tower_func(*batch)`` (``**batch`` for dict batches).
        variables: the Keras variables ``tower_func`` reads (``model.variables``).
        element_spec: the input dataset's ``element_spec`` (input names).
        names: the fetch names, in the inferencers' order.
        keras_default: whether ``tower_func`` is the default Keras tower.
        input_names: names of the positional batch elements, or ``None``.
    """

    def __init__(self, tower_func: Callable, variables: Sequence, element_spec: Any, names: Sequence[str],
                 *, keras_default: bool = False, input_names: Sequence[str] | None = None):
        self.tower_func = tower_func
        self.variables = list(variables)
        self.element_spec = element_spec
        self.keras_default = keras_default
        self.names = list(dict.fromkeys(check_fetch_name(n) for n in names))
        self.input_paths = input_paths(element_spec, tower_func, keras_default, input_names)

    def scope(self, values: Sequence | None, device: str | None = None) -> contextlib.ExitStack:
        """The context the tower runs in: the inference ``TowerContext``,
        ``keras.device(device)`` (the tower's new tensors go there; ``None``:
        Keras's default device) and, given ``values``, a
        ``keras.StatelessScope`` mapping each variable to its value (``None``:
        the variables themselves). Entering it costs about as much as a small
        model's batch, so a step enters it once per call, not per batch."""
        scope = contextlib.ExitStack()
        scope.enter_context(TowerContext("infer", is_training=False))
        if device is not None:
            scope.enter_context(keras.device(device))
        if values is not None:
            scope.enter_context(keras.StatelessScope(state_mapping=list(zip(self.variables, values))))
        return scope

    def run(self, batch: Any) -> dict:
        """``{name: tensor}`` on one batch of torch tensors (in the input's
        structure), inside :meth:`scope`: each fetch, its exact pair when
        the tower gave one, ``#sample_weight`` when the tower returned it."""
        outputs = _as_dict(call_tower(self.tower_func, batch))
        found = {}
        for name in self.names:
            key = key_in(name, outputs)
            if key is not None:
                found[name] = outputs[key]
                if all(k in outputs for k in exact_keys(key)):
                    found.update(zip(exact_keys(name), (outputs[k] for k in exact_keys(key))))
                continue
            path = key_in(name, self.input_paths)
            if path is None:
                raise UnknownFetchError(name, self._unknown_message(name, outputs))
            found[name] = get_path(batch, self.input_paths[path])
        if SAMPLE_WEIGHT_KEY in outputs:
            found[SAMPLE_WEIGHT_KEY] = outputs[SAMPLE_WEIGHT_KEY]
        return found

    def __call__(self, values: Sequence | None, batch: Any, device: str | None = None) -> dict:
        """:meth:`run` on one batch inside its own :meth:`scope`."""
        with self.scope(values, device):
            return self.run(batch)

    def _unknown_message(self, name: str, outputs: dict) -> str:
        shown = {k for k in outputs if not (k.endswith(("#num", "#den")) or k == SAMPLE_WEIGHT_KEY)}
        message = (f"Unknown fetch name {name!r}: the tower has no output or input called that "
                   f"(under PyTorch a fetch is a key of the tower's dict or an input of the batch). "
                   f"Available names: {sorted(shown | set(self.input_paths))}.")
        if self.keras_default:
            message += no_labels_hint(name, self.element_spec)
        return message
