"""``DataParallelInferenceRunner``: one tower per device, whole batches each."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from infer_callbacks.inferencers.base import Inferencer
from infer_callbacks.runner.engine.select import current_engine
from infer_callbacks.runner.inference_runner import InferenceRunner

__all__ = ["DataParallelInferenceRunner"]


class DataParallelInferenceRunner(InferenceRunner):
    """An :class:`InferenceRunner` with one tower per device, run together.

    As in tensorpack, each device gets **whole batches** of the input:
    batch ``k*N + i`` goes to device ``i`` (the batch size is per device;
    the last round may leave some devices idle). Every inferencer sees every
    batch whole, in dataset order, so every result, per-batch custom ones
    included, is the same for any number of devices, and every sample is
    seen once. The devices are the replicas of a
    ``tf.distribute.MirroredStrategy``; one ``tf.function`` call runs
    several rounds, and batches reach the devices from one host iterator
    (nothing is rebuilt per run).

    A model built outside any strategy is validated as it is (each replica
    reads the variables where they live). A model built under a
    ``MirroredStrategy`` can only run on that strategy's devices. Under
    JAX, a model under ``keras.distribution.DataParallel`` (its variables
    replicated on the mesh) still gets whole batches per device, each device
    reading its replica of the variables: the same numbers as one device.
    Under PyTorch the devices are torch devices (``'/cpu:0'``, the one CPU
    device; ``'/gpu:N'`` or ``N`` for ``cuda:N``), each replica reading a
    copy of the weights made on its device once per run.

    Args:
        input: as for :class:`InferenceRunner`.
        infs: an :class:`Inferencer` or a list of them.
        gpus: an int (the first N GPUs), a list of GPU ids, or a list of
            device strings such as ``['/cpu:0', '/cpu:1']``; checked at
            construction (a missing device lists the available ones).
        tower_func: as for :class:`InferenceRunner`.
        **kwargs: the keyword-only arguments of :class:`InferenceRunner`.

    Example:

    ```python
    runner = DataParallelInferenceRunner(val_ds, [ScalarStats("loss")], gpus=["/cpu:0"])
    ```
    """

    whole_batches = True

    def __init__(self, input: Any, infs: Inferencer | Sequence[Inferencer], gpus: Any,
                 tower_func: Callable[..., Any] | None = None, **kwargs):
        if "device" in kwargs:
            raise TypeError("DataParallelInferenceRunner takes its devices from `gpus`; `device` "
                            f"belongs to InferenceRunner (one device). Received: device={kwargs['device']!r}")
        self.devices = current_engine().devices(gpus)
        super().__init__(input, infs, tower_func=tower_func, **kwargs)

    def _whole_batch_devices(self) -> list[str]:
        return list(self.devices)
