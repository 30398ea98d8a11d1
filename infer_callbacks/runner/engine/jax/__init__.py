"""The JAX engine: one ``jax.jit`` step over Keras's stateless API.

| module | owns |
| --- | --- |
| ``__init__`` (:class:`JaxEngine`) | devices and placement: ``device=``, ``gpus=`` (whole batches per device), else ``keras.distribution.DataParallel`` (each batch split across its mesh), else JAX's default device |
| ``binding.py`` | the first (abstract) trace, a pass's calls, one call in flight |
| ``tower.py`` | the tower under ``keras.StatelessScope``, fetch names |
| ``step.py`` | the ``jax.jit`` step over the devices |
| ``split_step.py`` | the same with each batch split across a ``DataParallel`` mesh |
| ``sizes.py`` | each call's size, so that only a first pass compiles |
| ``snapshot.py`` | an asynchronous run's copy of the weights |
| ``devices.py`` | device strings and GPU ids as ``jax.Device`` |
| ``distribution.py`` | what a Keras distribution means for the runner |
| ``../host_processes.py`` (shared) | several JAX processes: each validates its share of whole batches, then they combine on the host |

Imported only under Keras's JAX backend (a TensorFlow user need not have
JAX installed): nothing here imports ``jax`` at module level but the
sub-modules.

May import: ``data``, ``distribute``, ``towers``, ``inferencers``, ``_util``,
and ``runner.engine``'s shared modules.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras

from infer_callbacks.runner.engine.base import Binding, Engine, EngineConfig

__all__ = ["JaxEngine"]


class JaxEngine(Engine):
    """Placement on ``jax.devices()`` and Keras's distribution."""

    name = "jax"

    def device(self, device: Any) -> str | None:
        if device is None:
            return None
        from infer_callbacks.runner.engine.jax.devices import jax_name, soft_jax_device
        found = soft_jax_device(device)
        return None if found is None else jax_name(found)

    def devices(self, gpus: Any) -> list[str]:
        from infer_callbacks.runner.engine.jax.devices import jax_devices, jax_name
        return [jax_name(d) for d in jax_devices(gpus)]

    def placement(self, model: Any, *, device: str | None, devices: Sequence[str] | None,
                  cache: dict) -> Any:
        """A list of ``jax.Device`` (whole batches per device), a batch split
        across a ``keras.distribution.DataParallel`` mesh, or ``None``;
        under JAX's distributed runtime (several processes) a
        ``processes.ProcessShare`` of this process's devices."""
        from infer_callbacks.distribute.jax_processes import jax_process
        from infer_callbacks.runner.engine.jax.devices import jax_device
        process = jax_process()
        if process is not None:  # several JAX processes: whole batches on this one's devices
            from infer_callbacks.runner.engine.host_processes import ProcessShare
            return ProcessShare(tuple(self._process_devices(device, devices)), *process)
        if devices is not None:
            return [jax_device(d) for d in devices]
        if device is not None:
            return [jax_device(device)]
        distribution = keras.distribution.distribution()
        if distribution is None:
            return None
        from infer_callbacks.runner.engine.jax.distribution import batch_split
        return batch_split(distribution)

    @staticmethod
    def _process_devices(device: str | None, devices: Sequence[str] | None) -> list:
        """This process's devices under JAX's distributed runtime: ``gpus=``'s,
        ``device=``'s, those of a ``DataParallel`` here, or its first."""
        import jax
        from infer_callbacks.runner.engine.jax.devices import jax_device
        if devices is not None:
            return [jax_device(d) for d in devices]
        if device is not None:
            return [jax_device(device)]
        distribution = keras.distribution.distribution()
        if distribution is None:
            return [jax.local_devices()[0]]
        from infer_callbacks.runner.engine.jax.distribution import process_devices
        return process_devices(distribution)

    def is_chief(self, placement: Any) -> bool:
        """Process 0 writes files (with one JAX process: this one)."""
        from infer_callbacks.distribute.jax_processes import jax_process
        process = jax_process()
        return process is None or process[0] == 0

    def placement_key(self, model: Any) -> Any:
        return id(keras.distribution.distribution())

    def bind(self, model: Any, placement: Any, config: EngineConfig, key: Any = None) -> Binding:
        from infer_callbacks.runner.engine.jax.binding import JaxBinding
        return JaxBinding(model, placement, config, key)
