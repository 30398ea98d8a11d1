"""Which engine a runner uses, by Keras's backend, and the devices in that
engine's terms.

| backend | engine | devices |
| --- | --- | --- |
| ``tensorflow`` | ``engine/binding.py`` (``tf.function``, ``tf.distribute``) | TensorFlow's logical devices, strategies |
| ``jax`` | ``engine/jax_binding.py`` (``jax.jit`` over Keras's stateless API) | ``jax.devices()``; a list of them for whole batches per device; ``keras.distribution.DataParallel``'s mesh for a batch split across it |

The JAX modules are imported only under the JAX backend (a TensorFlow user
need not have JAX installed).
"""

from __future__ import annotations

from typing import Any

import keras

from infer_callbacks.distribute.devices import gpu_devices, soft_device

__all__ = ["is_jax", "engine_class", "runner_device",
           "runner_devices", "jax_placement", "runner_placement", "placement_key"]

def is_jax() -> bool:
    return keras.backend.backend() == "jax"


def engine_class() -> type:
    """The binding class of the backend in use."""
    if is_jax():
        from infer_callbacks.runner.engine.jax_binding import JaxBinding
        return JaxBinding
    from infer_callbacks.runner.engine.binding import Binding
    return Binding


def runner_device(device: Any) -> str | None:
    """``InferenceRunner(device=...)`` checked in the backend's terms
    (TensorFlow: one of its logical devices; JAX: one of ``jax.devices()``;
    on both, a GPU id this machine lacks warns and means the default placement)."""
    if device is None or not is_jax():
        return soft_device(device)
    from infer_callbacks.runner.engine.jax_devices import jax_name, soft_jax_device
    found = soft_jax_device(device)
    return None if found is None else jax_name(found)


def runner_devices(gpus: Any) -> list[str]:
    """``DataParallelInferenceRunner(gpus=...)`` as device names, in order."""
    if not is_jax():
        return gpu_devices(gpus)
    from infer_callbacks.runner.engine.jax_devices import jax_devices, jax_name
    return [jax_name(d) for d in jax_devices(gpus)]


def jax_placement(*devices: str) -> list | None:
    """The ``jax.Device`` list for device names (``None``: JAX's default device)."""
    if not devices or devices == (None,):
        return None
    from infer_callbacks.runner.engine.jax_devices import jax_device
    return [jax_device(d) for d in devices]


def runner_placement(device: Any, model: Any = None) -> Any:
    """Where ``InferenceRunner`` validates ``model`` under JAX: ``device``
    when given; else Keras's distribution in effect (a
    ``keras.distribution.DataParallel``: each batch split across its mesh,
    see ``engine/jax_split_step.py``); else JAX's default device (``None``).

    Raises:
        ValueError: a distribution other than ``DataParallel`` (named).
    """
    if device is not None:
        return jax_placement(device)
    distribution = keras.distribution.distribution()
    if distribution is None:
        return None
    from infer_callbacks.runner.engine.jax_distribution import batch_split
    return batch_split(distribution)


def placement_key(model: Any) -> int:
    """What the runner's placement of ``model`` depends on beside its own
    settings: the model's ``tf.distribute`` strategy, or under JAX Keras's
    distribution in effect (a binding is rebuilt when it changes)."""
    if is_jax():
        return id(keras.distribution.distribution())
    return id(getattr(model, "distribute_strategy", None))
