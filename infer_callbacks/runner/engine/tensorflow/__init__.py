"""The TensorFlow engine: ``tf.function`` steps under ``tf.distribute``.

| module | owns |
| --- | --- |
| ``__init__`` (:class:`TensorFlowEngine`) | devices and placement: ``device=`` as a ``OneDeviceStrategy``, ``gpus=`` as a ``MirroredStrategy`` (whole batches per replica), else the model's own strategy |
| ``binding.py`` | the tower traced once, the step, a pass's calls |
| ``step.py`` | the compiled multi-batch step (one replica, replicas with whole batches, a split batch, workers) |
| ``chunk.py`` | one call's outputs on the host, in dataset order |
| ``snapshot.py`` | an asynchronous run's copy of the weights |

May import: ``data``, ``distribute``, ``towers``, ``inferencers``, ``_util``,
and ``runner.engine``'s shared modules.
"""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

from infer_callbacks.distribute.devices import (canonical_device, gpu_devices, is_chief, model_strategy,
                                                soft_device)
from infer_callbacks.runner.engine.base import Binding, Engine, EngineConfig

__all__ = ["TensorFlowEngine"]


class TensorFlowEngine(Engine):
    """Placement on TensorFlow's logical devices, with ``tf.distribute``."""

    name = "tensorflow"

    def device(self, device: Any) -> str | None:
        return soft_device(device)

    def devices(self, gpus: Any) -> list[str]:
        return gpu_devices(gpus)

    def placement(self, model: Any, *, device: str | None, devices: Sequence[str] | None,
                  cache: dict) -> tf.distribute.Strategy | None:
        if devices is not None:
            return _whole_batches(model, list(devices), cache)
        if device is not None:
            return tf.distribute.OneDeviceStrategy(device)
        return model_strategy(model)

    def placement_key(self, model: Any) -> Any:
        return id(getattr(model, "distribute_strategy", None))

    def is_chief(self, placement: Any) -> bool:
        return is_chief(placement)

    def bind(self, model: Any, placement: Any, config: EngineConfig, key: Any = None) -> Binding:
        from infer_callbacks.runner.engine.tensorflow.binding import TensorFlowBinding
        return TensorFlowBinding(model, placement, config, key)


def _whole_batches(model: Any, devices: list[str], cache: dict) -> tf.distribute.Strategy:
    """The strategy whose replicas take whole batches on ``devices``: the
    model's own when it spans exactly those devices, else one of ours
    (kept in ``cache``, the runner's)."""
    theirs_strategy = model_strategy(model)
    if theirs_strategy is not None and not isinstance(theirs_strategy, tf.distribute.OneDeviceStrategy):
        theirs = []
        for name in theirs_strategy.extended.worker_devices:
            try:
                theirs.append(canonical_device(name))
            except ValueError:
                theirs.append(name)
        if sorted(theirs) == sorted(devices):
            return theirs_strategy
        raise ValueError(
            f"The model was built under a {type(theirs_strategy).__name__} over {theirs}, so its "
            f"variables live on those devices only; DataParallelInferenceRunner cannot run it on "
            f"{devices}. Pass gpus={theirs!r}, or use InferenceRunner, which validates on all "
            "of the model's replicas.")
    if cache.get("devices") != devices:
        cache["devices"], cache["strategy"] = devices, tf.distribute.MirroredStrategy(devices)
    return cache["strategy"]
