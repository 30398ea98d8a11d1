"""PyTorch inputs: a ``torch.utils.data.DataLoader`` (or any re-iterable
yielding torch tensors) and Keras-style ``(x, y[, sample_weight])`` torch
tensors, as numpy.

The runner's input pipeline is ``tf.data`` on every backend
(``source.py``); a torch tensor enters it as numpy: detached, copied to the
host if it lives on a GPU, ``bfloat16`` as ``float32`` (numpy has no
``bfloat16``), else a view of the tensor's memory. A ``DataLoader`` is an
ordinary re-iterable of batches (its ``__len__`` gives the progress bar its
total; each run starts a fresh iterator, so its workers and shuffling behave
as in a training loop); its batches are converted one by one.

Torch is recognised by the type's module (``torch``), so this module never
imports it: a TensorFlow or JAX user need not have torch installed.

Example:

>>> is_torch_tensor(np.zeros(3)), torch_to_numpy(np.zeros(2)).shape
(False, (2,))
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["is_torch_tensor", "torch_to_numpy", "torch_arrays_to_numpy"]


def is_torch_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor (``torch.Tensor``, a ``Parameter``, ...)."""
    module = type(value).__module__
    return (module == "torch" or module.startswith("torch.")) and hasattr(value, "detach") \
        and hasattr(value, "numpy")


def torch_to_numpy(value: Any) -> Any:
    """``value`` as numpy when it is a torch tensor; anything else unchanged."""
    if not is_torch_tensor(value):
        return value
    value = value.detach()
    if value.device.type != "cpu":
        value = value.cpu()
    if str(value.dtype) == "torch.bfloat16":
        value = value.float()
    return value.numpy()


def torch_arrays_to_numpy(source: Any) -> Any:
    """A tuple ``(x, y[, sample_weight])`` whose parts are torch tensors (or
    dicts of them) with its tensors as numpy; any other input unchanged."""
    if not isinstance(source, tuple) or len(source) not in (2, 3):
        return source

    def part(p):
        if isinstance(p, dict) and p and all(is_torch_tensor(v) for v in p.values()):
            return {k: torch_to_numpy(v) for k, v in p.items()}
        return torch_to_numpy(p)

    if not any(is_torch_tensor(p) or (isinstance(p, dict) and any(is_torch_tensor(v) for v in p.values()))
               for p in source):
        return source
    return tuple(part(p) for p in source)
