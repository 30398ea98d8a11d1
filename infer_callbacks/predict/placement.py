"""Where a predictor runs: tensorpack's ``device=`` (a GPU id, ``-1`` for the
CPU, or a device string) as a device name, with tensorpack's soft placement
for a GPU this machine lacks."""

from __future__ import annotations

import warnings

import numpy as np

from infer_callbacks.distribute.devices import available_devices, canonical_device

__all__ = ["predictor_device"]


def predictor_device(device: int | str | None) -> str | None:
    """The device a predictor asked for with ``device=`` runs on.

    ``None``: TensorFlow's placement. An int is a GPU id as in tensorpack
    (``-1`` is ``'/cpu:0'``); a GPU id this machine does not have falls back
    to TensorFlow's placement with a warning naming it (tensorpack ran with
    soft placement). A device string must name an existing device.

    Example:

    >>> predictor_device(None) is None
    True
    """
    if device is None:
        return None
    if isinstance(device, (int, np.integer)) and not isinstance(device, (bool, np.bool_)):
        if device == -1:
            return canonical_device("/cpu:0")
        if device < -1:
            raise ValueError(f"`device` must be a GPU id >= 0, -1 for '/cpu:0', or a device string "
                             f"such as '/gpu:1'. Received: device={device}")
        try:
            return canonical_device(int(device))
        except ValueError:
            warnings.warn(
                f"get_predictor(device={int(device)}): this machine has no GPU {int(device)} "
                f"(devices: {available_devices()}); the predictor uses TensorFlow's default "
                "placement instead, as tensorpack's soft placement did.", stacklevel=3)
            return None
    if not isinstance(device, str):
        raise TypeError(f"`device` must be an int GPU id, -1 for '/cpu:0', a device string such as "
                        f"'/gpu:1', or None. Received: device={device!r}")
    return canonical_device(device)
