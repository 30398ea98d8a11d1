"""Which engine a runner uses, by Keras's backend, and the devices in that
engine's terms.

| backend | engine | devices |
| --- | --- | --- |
| ``tensorflow`` | ``engine/binding.py`` (``tf.function``, ``tf.distribute``) | TensorFlow's logical devices, strategies |
| ``jax`` | ``engine/jax_binding.py`` (``jax.jit`` over Keras's stateless API) | ``jax.devices()``; a list of them for whole batches per device |

The JAX modules are imported only under the JAX backend (a TensorFlow user
need not have JAX installed).
"""

from __future__ import annotations

from typing import Any

import keras

from infer_callbacks.distribute.devices import gpu_devices, soft_device

__all__ = ["is_jax", "engine_class", "runner_device",
           "runner_devices", "jax_placement"]

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
    (TensorFlow: soft placement of GPU ids; JAX: one of ``jax.devices()``)."""
    if device is None or not is_jax():
        return soft_device(device)
    from infer_callbacks.runner.engine.jax_devices import jax_device, jax_name
    return jax_name(jax_device(device))


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
