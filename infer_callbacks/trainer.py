"""The tensorpack-style trainer host: ``ModelDesc``, ``TrainConfig``,
``launch_train_with_config`` and the trainers.

(Being built: only ``ModelDesc`` is here so far.)
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

__all__ = ["ModelDesc"]


class ModelDesc:
    """A model described the tensorpack way.

    Override ``inputs()`` (a list of named ``tf.TensorSpec``, batch dimension
    ``None``), ``build_graph(*inputs)`` (called under a
    :class:`~infer_callbacks.TowerContext`; returns the scalar cost to
    minimize, and may name tensors with ``tf.identity(t, name=...)``), and
    ``optimizer()``. Keep layers as attributes created in ``__init__`` (e.g. a
    ``keras.Sequential``), so that every tower shares the same variables.
    """

    def inputs(self) -> list[tf.TensorSpec]:
        raise NotImplementedError(f"{type(self).__name__} must override inputs().")

    def build_graph(self, *inputs: tf.Tensor) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must override build_graph(*inputs).")

    def optimizer(self):
        raise NotImplementedError(f"{type(self).__name__} must override optimizer().")

    def get_input_signature(self) -> list[tf.TensorSpec]:
        """``inputs()``, checked: named ``tf.TensorSpec`` with unique names."""
        specs = list(self.inputs())
        names = []
        for spec in specs:
            if not isinstance(spec, tf.TensorSpec) or not spec.name:
                raise ValueError(
                    f"{type(self).__name__}.inputs() must return named tf.TensorSpec, e.g. "
                    f"tf.TensorSpec((None, 28, 28), tf.float32, 'image'). Received: {spec!r}")
            names.append(spec.name)
        if len(set(names)) != len(names):
            raise ValueError(f"{type(self).__name__}.inputs() has duplicate names: {names}")
        return specs

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.get_input_signature()]
