"""Devices and workers: device strings, GPU ids, the strategy for a device
list, and chief/worker facts.

Every other module asks here; nothing here knows about models' outputs or
inferencers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from infer_callbacks.distribute.cluster import chief_task, tf_config_task
from infer_callbacks.distribute.device_names import missing_gpu_id
from infer_callbacks.distribute.jax_processes import jax_process

__all__ = [
    "available_devices",
    "canonical_device",
    "soft_device",
    "gpu_devices",
    "model_strategy",
    "spans_workers",
    "worker_count",
    "is_chief",
]

_USAGE = ("Pass an int (the first N GPUs), a list of GPU ids such as [0, 1], or "
          "a list of device strings such as ['/cpu:0', '/cpu:1'].")


def available_devices() -> list[str]:
    """The full names of this process's logical devices."""
    return [d.name for d in tf.config.list_logical_devices()]


def canonical_device(device: str | int) -> str:
    """The full name of an existing logical device.

    Accepts ``'/gpu:0'``, ``'GPU:0'``, ``'/device:CPU:1'`` or an int GPU id
    (tensorpack's ``device=0``).

    Raises:
        ValueError: the device does not exist; the message lists those that do.
    """
    if isinstance(device, (int, np.integer)) and not isinstance(device, (bool, np.bool_)):
        if device < 0:
            raise ValueError(f"A GPU id must be >= 0. Received: device={device}")
        device = f"/gpu:{int(device)}"
    if not isinstance(device, str):
        raise TypeError(
            f"A device must be a string such as '/cpu:0' or an int GPU id. Received: {device!r}")
    try:
        spec = tf.DeviceSpec.from_string(device if device.startswith("/") else "/" + device)
    except ValueError:
        spec = None
    available = available_devices()
    if spec is not None and spec.device_type is not None:
        for name in available:
            have = tf.DeviceSpec.from_string(name)
            if (have.device_type.upper() == spec.device_type.upper()
                    and (spec.device_index is None or have.device_index == spec.device_index)):
                return name
    raise ValueError(f"Device {device!r} does not exist on this machine. Available devices: {available}.")


def soft_device(device: str | int | None) -> str | None:
    """:func:`canonical_device` with TensorFlow's soft placement for GPU ids.

    ``None`` stays ``None`` (the default placement). An int GPU id this
    machine does not have (a GPU script on a CPU machine, tensorpack's
    ``device=0``) gives one ``RuntimeWarning`` naming it and ``None``. A
    device string must exist: it was chosen explicitly.

    Raises:
        ValueError: a device string that does not exist, or a negative id.
    """
    if device is None:
        return None
    have = available_devices()
    if missing_gpu_id(device, gpu_count=sum(1 for d in have if d.startswith("/device:GPU:")), available=have,
                      fallback="TensorFlow's default placement"):
        return None
    return canonical_device(device)


def gpu_devices(gpus: Any) -> list[str]:
    """The devices ``gpus`` designates, as full logical device names, in order.

    Args:
        gpus: an int (the first N GPUs), a list of GPU ids, or a list of
            device strings.

    Raises:
        TypeError / ValueError: naming the bad value and the available devices.
    """
    available = available_devices()
    if isinstance(gpus, str):
        gpus = [gpus]
    if isinstance(gpus, (bool, np.bool_)) or not isinstance(gpus, (int, np.integer, list, tuple)):
        raise TypeError(f"`gpus` has the wrong type. {_USAGE} Received: gpus={gpus!r}")
    if isinstance(gpus, (int, np.integer)):
        count = int(gpus)
        if count < 1:
            raise ValueError(f"`gpus` must be at least 1. Received: gpus={count}. {_USAGE} "
                             f"Available devices: {available}.")
        have = [d.name for d in tf.config.list_logical_devices("GPU")]
        if count > len(have):
            hint = " Without a GPU, pass gpus=['/cpu:0']." if not have else ""
            raise ValueError(f"`gpus={count}` asks for the first {count} GPUs, but this machine has "
                             f"{len(have)}. Available devices: {available}.{hint} {_USAGE}")
        gpus = list(range(count))
    gpus = list(gpus)
    if not gpus:
        raise ValueError(f"`gpus` is an empty list. {_USAGE} Available devices: {available}.")
    devices, missing = [], []
    for g in gpus:
        if not isinstance(g, str) and not (
                isinstance(g, (int, np.integer)) and not isinstance(g, (bool, np.bool_)) and g >= 0):
            raise TypeError(f"Every element of `gpus` must be a GPU id (an int >= 0) or a device "
                            f"string. Received {g!r} in gpus={gpus!r}.")
        try:
            devices.append(canonical_device(g))
        except ValueError:
            missing.append(g)
    if missing:
        raise ValueError(f"`gpus` names devices that do not exist on this machine: {missing} "
                         f"(gpus={gpus!r}). Available devices: {available}.")
    if len(set(devices)) != len(devices):
        raise ValueError(f"`gpus` lists a device twice: gpus={gpus!r} means {devices}.")
    return devices


def model_strategy(model: Any) -> tf.distribute.Strategy | None:
    """The strategy ``model`` was built under, or ``None`` for the default one."""
    if model is None:
        return None
    strategy = getattr(model, "distribute_strategy", None)
    return None if strategy is None or _is_default(strategy) else strategy


def _is_default(strategy: tf.distribute.Strategy) -> bool:
    return type(strategy).__name__ == "_DefaultDistributionStrategy"


def spans_workers(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether ``strategy`` has replicas in more than one process."""
    return worker_count(strategy) > 1


def worker_count(strategy: tf.distribute.Strategy | None) -> int:
    """How many worker processes ``strategy`` spans (1 for local ones)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return max(1, sum(len(v) for k, v in spec.items() if k in ("chief", "worker")))


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process is the chief: the one that writes files.

    With a multi-worker strategy, its task; else ``TF_CONFIG``'s task (chief,
    or worker 0 when there is no chief); under JAX's distributed runtime
    (several processes), process 0; without any of these, ``True``.
    """
    process = jax_process()
    if process is not None:
        return process[0] == 0
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type is not None:
        return chief_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())
    return chief_task(*tf_config_task())
