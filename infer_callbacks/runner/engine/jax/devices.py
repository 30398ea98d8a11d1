"""JAX devices for the JAX engine: the device strings and GPU ids a user
passes (``'/cpu:0'``, ``'/gpu:1'``, ``1``) as ``jax.Device`` objects.

The TensorFlow engine asks ``distribute/devices.py`` (TensorFlow's logical
devices); under the JAX backend the devices are JAX's own
(``jax.devices()``), so ``XLA_FLAGS=--xla_force_host_platform_device_count=3``
gives ``'/cpu:0'`` ... ``'/cpu:2'``.

Example:

>>> [d.platform for d in jax_devices(["/cpu:0"])]
['cpu']
"""

from __future__ import annotations

from typing import Any

import jax

from infer_callbacks.distribute.device_names import USAGE, is_gpu_id, missing_gpu_id, parse_device

__all__ = ["jax_device", "soft_jax_device", "jax_devices", "jax_name", "available_jax_devices"]

_USAGE = USAGE
_is_int = is_gpu_id


def available_jax_devices() -> list[str]:
    """This process's JAX devices, named as TensorFlow lists its devices
    (``'/device:CPU:0'``), so a device error reads the same on both
    backends; every name is a valid ``device=`` argument."""
    def full(d):
        kind, index = jax_name(d)[1:].split(":")
        return f"/device:{kind.upper()}:{index}"
    return [full(d) for d in jax.local_devices()] + [
        full(d) for d in _local("cpu") if jax.default_backend() != "cpu"]


def _local(kind: str) -> list:
    """This process's devices of ``kind`` (all of them with one JAX process;
    under JAX's distributed runtime, a process validates on its own)."""
    return jax.local_devices(backend=kind)


def jax_name(device: jax.Device) -> str:
    """``'/cpu:1'`` for the second CPU device (the index among its platform's devices)."""
    kind = "gpu" if device.platform in ("gpu", "cuda", "rocm") else device.platform
    local = _local(device.platform)
    return f"/{kind}:{local.index(device)}"


def jax_device(device: str | int | jax.Device) -> jax.Device:
    """The ``jax.Device`` a device string or GPU id names.

    Raises:
        ValueError: the device does not exist; the message lists those that do.
    """
    if isinstance(device, jax.Device):
        return device
    kind, index = parse_device(device)
    try:
        found = _local(kind)
    except RuntimeError:
        found = []
    if index < len(found):
        return found[index]
    hint = (" For several CPU devices, start Python with "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N.") if kind == "cpu" else ""
    raise ValueError(f"Device {device!r} does not exist on this machine. Available devices: "
                     f"{available_jax_devices()}.{hint}")


def _gpus() -> list:
    try:
        return _local("gpu")
    except RuntimeError:
        return []


def soft_jax_device(device: str | int | jax.Device) -> jax.Device | None:
    """:func:`jax_device`, with the TensorFlow engine's soft placement for
    GPU ids: an int id this process has no GPU for (a GPU script on a CPU
    machine, tensorpack's ``device=0``) gives one ``RuntimeWarning`` naming
    it and ``None`` (JAX's default device). A device string must exist."""
    if missing_gpu_id(device, gpu_count=len(_gpus()), available=available_jax_devices(),
                      fallback="JAX's default device"):
        return None
    return jax_device(device)


def jax_devices(gpus: Any) -> list[jax.Device]:
    """The devices ``gpus`` designates (``DataParallelInferenceRunner``'s
    argument), in order.

    Raises:
        TypeError / ValueError: naming the bad value and the available devices.
    """
    if isinstance(gpus, str):
        gpus = [gpus]
    if _is_int(gpus):
        count = int(gpus)
        have = _gpus()
        if count < 1 or count > len(have):
            hint = " Without a GPU, pass gpus=['/cpu:0']." if not have else ""
            raise ValueError(f"`gpus={count}` asks for the first {count} GPUs, but this machine "
                             f"has {len(have)}. Available devices: {available_jax_devices()}.{hint} {_USAGE}")
        return list(have[:count])
    if not isinstance(gpus, (list, tuple)) or not gpus:
        raise TypeError(f"`gpus` must be a non-empty list or an int. {_USAGE} Received: gpus={gpus!r}")
    devices = [jax_device(g) for g in gpus]
    if len(set(devices)) != len(devices):
        raise ValueError(f"`gpus` lists a device twice: gpus={gpus!r} means {devices}.")
    return devices
