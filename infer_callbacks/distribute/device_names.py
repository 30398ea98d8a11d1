"""Device strings and GPU ids as every backend reads them, before any
backend is asked what exists.

``'/cpu:0'``, ``'CPU:0'``, ``'/device:GPU:1'``, ``'/job:worker/task:0/device:GPU:1'``
name a kind and an index; an int is a GPU id (tensorpack's ``device=0``).
The engines of JAX and PyTorch map ``(kind, index)`` to their own devices
(TensorFlow's engine asks TensorFlow itself, ``devices.py``).

Example:

>>> parse_device("/gpu:1"), parse_device("CPU:0"), parse_device(2)
(('gpu', 1), ('cpu', 0), ('gpu', 2))
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np

__all__ = ["USAGE", "is_gpu_id", "parse_device", "missing_gpu_id"]

USAGE = ("Pass an int (the first N GPUs), a list of GPU ids such as [0, 1], or "
         "a list of device strings such as ['/cpu:0', '/cpu:1'].")
_DEVICE = re.compile(r"^/?(?:device:)?(?:job:[^/]+/)?(?:replica:\d+/)?(?:task:\d+/)?(?:device:)?"
                     r"(?P<kind>cpu|gpu|tpu):(?P<index>\d+)$", re.IGNORECASE)


def is_gpu_id(value: Any) -> bool:
    """Whether ``value`` is an int (a GPU id or count), ``bool`` excluded."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def parse_device(device: Any) -> tuple[str, int]:
    """``(kind, index)`` of a device string or GPU id, ``kind`` lower case.

    Raises:
        ValueError: a negative GPU id.
        TypeError: neither a device string nor an int.
    """
    if is_gpu_id(device):
        if device < 0:
            raise ValueError(f"A GPU id must be >= 0. Received: device={device}")
        return "gpu", int(device)
    match = _DEVICE.match(device.strip()) if isinstance(device, str) else None
    if match is None:
        raise TypeError(f"A device must be a string such as '/cpu:0' or an int GPU id. "
                        f"Received: {device!r}")
    return match["kind"].lower(), int(match["index"])


def missing_gpu_id(device: Any, *, gpu_count: int, available: list[str], fallback: str) -> bool:
    """The soft-placement rule every engine shares: an int GPU id this
    machine has no GPU for (a GPU script on a CPU machine, tensorpack's
    ``device=0``) gives one ``RuntimeWarning`` naming it, the available
    devices and ``fallback`` (where the run goes instead), and ``True``;
    the caller then uses its default placement. Anything else: ``False``
    (a device string must exist: the caller checks it)."""
    if not (is_gpu_id(device) and 0 <= int(device) and int(device) >= gpu_count):
        return False
    warnings.warn(f"device={int(device)} asks for GPU '/gpu:{int(device)}', which this machine does "
                  f"not have (available devices: {available}); running on {fallback} instead. Pass a "
                  "device string such as '/cpu:0' to choose one (a device string that does not exist "
                  "is an error).", RuntimeWarning, stacklevel=4)
    return True
