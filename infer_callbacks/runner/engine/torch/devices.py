"""Torch devices for the PyTorch engine: the device strings and GPU ids a
user passes (``'/cpu:0'``, ``'/gpu:1'``, ``1``) as ``torch.device`` objects.

The strings are parsed once for every backend
(``distribute/device_names.py``); what exists is torch's own: one CPU device
(``'/cpu:0'``, whatever the cores) and ``torch.cuda.device_count()`` GPUs
(``'/gpu:N'`` is ``cuda:N``).

Example:

>>> torch_devices(["/cpu:0"])
[device(type='cpu')]
"""

from __future__ import annotations

from typing import Any

import torch

from infer_callbacks.distribute.device_names import USAGE, is_gpu_id, missing_gpu_id, parse_device

__all__ = ["available_torch_devices", "torch_device", "soft_torch_device", "torch_devices", "torch_name"]


def _gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def available_torch_devices() -> list[str]:
    """This process's torch devices, named as TensorFlow lists its devices
    (``'/device:CPU:0'``), so a device error reads the same on every backend."""
    return ["/device:CPU:0"] + [f"/device:GPU:{i}" for i in range(_gpu_count())]


def torch_name(device: torch.device) -> str:
    """``'/gpu:1'`` for ``cuda:1``, ``'/cpu:0'`` for the CPU."""
    if device.type == "cuda":
        return f"/gpu:{device.index if device.index is not None else torch.cuda.current_device()}"
    return f"/{device.type}:{device.index or 0}"


def torch_device(device: str | int | torch.device) -> torch.device:
    """The ``torch.device`` a device string or GPU id names.

    Raises:
        ValueError: the device does not exist; the message lists those that do.
    """
    if isinstance(device, torch.device):
        return device
    kind, index = parse_device(device)
    if kind == "cpu" and index == 0:
        return torch.device("cpu")
    if kind == "gpu" and index < _gpu_count():
        return torch.device("cuda", index)
    hint = " PyTorch has one CPU device, '/cpu:0', however many cores it uses." if kind == "cpu" else ""
    raise ValueError(f"Device {device!r} does not exist on this machine. Available devices: "
                     f"{available_torch_devices()}.{hint}")


def soft_torch_device(device: str | int | torch.device) -> torch.device | None:
    """:func:`torch_device`, with the other engines' soft placement for GPU
    ids: an int id this machine has no GPU for (a GPU script on a CPU
    machine, tensorpack's ``device=0``) gives one ``RuntimeWarning`` naming
    it and ``None`` (the model's own device). A device string must exist."""
    if is_gpu_id(device):
        parse_device(device)  # a negative id is an error
    if missing_gpu_id(device, gpu_count=_gpu_count(), available=available_torch_devices(),
                      fallback="the model's own device"):
        return None
    return torch_device(device)


def torch_devices(gpus: Any) -> list[torch.device]:
    """The devices ``gpus`` designates (``DataParallelInferenceRunner``'s
    argument), in order.

    Raises:
        TypeError / ValueError: naming the bad value and the available devices.
    """
    if isinstance(gpus, str):
        gpus = [gpus]
    if is_gpu_id(gpus):
        count, have = int(gpus), _gpu_count()
        if count < 1 or count > have:
            hint = " Without a GPU, pass gpus=['/cpu:0']." if not have else ""
            raise ValueError(f"`gpus={count}` asks for the first {count} GPUs, but this machine "
                             f"has {have}. Available devices: {available_torch_devices()}.{hint} {USAGE}")
        return [torch.device("cuda", i) for i in range(count)]
    if not isinstance(gpus, (list, tuple)) or not gpus:
        raise TypeError(f"`gpus` must be a non-empty list or an int. {USAGE} Received: gpus={gpus!r}")
    devices = [torch_device(g) for g in gpus]
    if len(set(devices)) != len(devices):
        raise ValueError(f"`gpus` lists a device twice: gpus={gpus!r} means {devices}.")
    return devices
