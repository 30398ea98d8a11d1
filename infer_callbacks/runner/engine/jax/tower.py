"""The JAX engine's tower: ``fn(values, batch) -> {name: array}`` for the
requested fetch names, pure in the model's variable values.

The tower function (the user's, written with ``keras.ops``, or the default
Keras tower) runs under ``keras.StatelessScope``, which maps each of the
model's variables to the value passed in: inside ``jax.jit`` the values are
arguments, so one compiled step serves every epoch's weights (and an
asynchronous run's snapshot) without retracing.

Names resolve as on TensorFlow (``towers/spec.py``): a key of the tower's
dict, then an input of the batch; ``name`` and ``name:0`` alike. JAX has no
graph of named ops, so a name must be a key or an input.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import keras

from infer_callbacks.towers.names import get_path, input_paths, key_in, no_labels_hint
from infer_callbacks.towers.spec import (SAMPLE_WEIGHT_KEY, TowerContext, UnknownFetchError, call_tower,
                                         check_fetch_name, exact_keys)

__all__ = ["JaxTower"]


def _as_dict(out: Any) -> dict:
    if out is None:
        return {}
    if isinstance(out, dict):
        return dict(out)
    flat = jax.tree_util.tree_leaves(out)
    return {"output": flat[0]} if len(flat) == 1 else {f"output_{i}": t for i, t in enumerate(flat)}


class JaxTower:
    """The requested fetches of ``tower_func`` as a pure function of the
    variables' values.

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
        self.traces = 0  # how many times JAX traced the tower (for tests)

    def _call(self, values: Sequence, batch: Any) -> dict:
        self.traces += 1
        mapping = list(zip(self.variables, values))
        with TowerContext("infer", is_training=False), keras.StatelessScope(state_mapping=mapping):
            out = call_tower(self.tower_func, batch)
        return _as_dict(out)

    def __call__(self, values: Sequence, batch: Any) -> dict:
        """``{name: array}``: each fetch, its exact pair when the tower gave
        one, ``#sample_weight`` when the tower returned it. Rank-0 values
        stay scalars (one per batch)."""
        outputs = self._call(values, batch)
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
        return {k: jnp.asarray(v) for k, v in found.items()}

    def _unknown_message(self, name: str, outputs: dict) -> str:
        shown = {k for k in outputs if not (k.endswith(("#num", "#den")) or k == SAMPLE_WEIGHT_KEY)}
        message = (f"Unknown fetch name {name!r}: the tower has no output or input called that "
                   f"(under JAX a fetch is a key of the tower's dict or an input of the batch). "
                   f"Available names: {sorted(shown | set(self.input_paths))}.")
        if self.keras_default:
            message += no_labels_hint(name, self.element_spec)
        return message

    def output_shapes(self, values: Sequence, batch: Any) -> dict[str, jax.ShapeDtypeStruct]:
        """The outputs' shapes and dtypes for one batch (one abstract trace,
        no computation): checks every fetch name."""
        return jax.eval_shape(self, values, batch)
