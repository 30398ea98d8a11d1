"""The PyTorch engine: Keras's torch backend, eagerly, without autograd.

| module | owns |
| --- | --- |
| ``__init__`` (:class:`TorchEngine`) | devices and placement: ``device=``, ``gpus=`` (whole batches per device), else the model's own device |
| ``binding.py`` | the first trace (one small batch), the weights each replica reads, a pass's calls |
| ``tower.py`` | the tower under ``keras.StatelessScope`` (a snapshot, a copy on another device), fetch names |
| ``step.py`` | each batch of a call through the tower on its device, ``torch.no_grad``, numpy out |
| ``snapshot.py`` | an asynchronous run's copy of the weights |
| ``devices.py`` | device strings and GPU ids as ``torch.device`` |

Imported only under Keras's PyTorch backend (a TensorFlow user need not have
torch installed): nothing here imports ``torch`` at module level but the
sub-modules. Keras's torch backend has no ``keras.distribution``, so there is
no batch split across devices: a model is validated where its variables are,
or on the devices a user names.

May import: ``data``, ``distribute``, ``towers``, ``inferencers``, ``_util``,
and ``runner.engine``'s shared modules.
"""

from __future__ import annotations

from typing import Any, Sequence

from infer_callbacks.runner.engine.base import Binding, Engine, EngineConfig

__all__ = ["TorchEngine"]


class TorchEngine(Engine):
    """Placement on torch devices."""

    name = "torch"

    def device(self, device: Any) -> str | None:
        if device is None:
            return None
        from infer_callbacks.runner.engine.torch.devices import soft_torch_device, torch_name
        found = soft_torch_device(device)
        return None if found is None else torch_name(found)

    def devices(self, gpus: Any) -> list[str]:
        from infer_callbacks.runner.engine.torch.devices import torch_devices, torch_name
        return [torch_name(d) for d in torch_devices(gpus)]

    def placement(self, model: Any, *, device: str | None, devices: Sequence[str] | None,
                  cache: dict) -> Any:
        """A list of ``torch.device`` (whole batches per device), or ``None``:
        the model's own device."""
        from infer_callbacks.runner.engine.torch.devices import torch_device
        if devices is not None:
            return [torch_device(d) for d in devices]
        if device is not None:
            return [torch_device(device)]
        return None

    def placement_key(self, model: Any) -> Any:
        return None

    def bind(self, model: Any, placement: Any, config: EngineConfig, key: Any = None) -> Binding:
        from infer_callbacks.runner.engine.torch.binding import TorchBinding
        return TorchBinding(model, placement, config, key)
