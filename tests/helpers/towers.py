"""The default Keras tower run the way each backend's engine runs it, for
the towers' tests.

- TensorFlow: ``TowerSpec.replica_fn`` (towers/spec.py), eagerly or in a
  ``tf.function`` with the batches' signature;
- JAX: ``JaxTower`` (runner/engine/jax/tower.py), eagerly or in ``jax.jit``
  with the model's variable values as arguments, as the JAX engine runs it;
- PyTorch: ``TorchTower`` (runner/engine/torch/tower.py) under
  ``torch.no_grad``, eagerly (torch compiles nothing), as the PyTorch engine runs it.

All resolve the same names and return the same exact pairs; results come
back as numpy.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from infer_callbacks.towers.keras_tower import keras_tower_func
from infer_callbacks.towers.spec import TowerSpec

BACKEND = keras.backend.backend()


def compiled(fn: Callable) -> Callable:
    """``fn`` compiled as the backend compiles a step: ``tf.function`` or
    ``jax.jit``; under PyTorch, ``fn`` without autograd (the engine's step is eager)."""
    if BACKEND == "torch":
        import torch
        return torch.no_grad()(fn)
    if BACKEND == "jax":
        import jax
        return jax.jit(fn)
    return tf.function(fn)


def to_numpy(value: Any) -> np.ndarray:
    """A backend tensor (or a TF eager tensor) as numpy."""
    if isinstance(value, tf.Tensor):
        return value.numpy()
    return keras.ops.convert_to_numpy(value)


def tower_fetches(model: keras.Model, element_spec: Any, names: Sequence[str], batches,
                  *, graph: bool = False) -> list[dict[str, np.ndarray]]:
    """Per-batch ``{name: numpy}`` of ``names`` (with their exact pairs) from
    the default tower of ``model``, for batches with this ``element_spec``
    (``graph``: compiled, with the batch dimension unknown on TensorFlow)."""
    tower = keras_tower_func(model)
    if BACKEND == "jax":
        from infer_callbacks.runner.engine.jax.tower import JaxTower
        jax_tower = JaxTower(tower, model.variables, element_spec, names, keras_default=True)
        values = [v.value for v in model.variables]
        fn = compiled(jax_tower) if graph else jax_tower

        def run(batch):
            return fn(values, tf.nest.map_structure(to_numpy, batch))
    elif BACKEND == "torch":
        import torch

        from infer_callbacks.runner.engine.torch.tower import TorchTower
        torch_tower = TorchTower(tower, model.variables, element_spec, names, keras_default=True)

        def run(batch):
            with torch.no_grad():
                return torch_tower(None, tf.nest.map_structure(lambda t: torch.from_numpy(np.array(to_numpy(t))), batch))
    else:
        run = TowerSpec(tower, element_spec, keras_default=True).replica_fn(names)
        if graph:
            run = tf.function(run, input_signature=[element_spec], autograph=False)
    return [{k: to_numpy(v) for k, v in run(batch).items()} for batch in batches]
