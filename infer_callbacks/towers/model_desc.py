"""``ModelDesc`` (a model described the tensorpack way) and ``DescModel``, its
Keras face.

Both the trainer (which trains a ``ModelDesc`` through its ``DescModel``) and
the after-training half (``predict``, ``export``, ``checkpoint``) import this
module; it imports neither of them.

| object | owns |
| --- | --- |
| ``ModelDesc`` (the user's) | ``inputs()``, ``build_graph(*inputs)``, ``optimizer()``, its layers as attributes |
| ``DescModel`` | the Keras view the callbacks see: ``weights``, ``optimizer``, ``stop_training``, :meth:`DescModel.inference_tower` |
| ``checkpoint`` | the one checkpoint layout of both (variables named by attribute, see :func:`infer_callbacks.checkpoints.layout.named_weights`) |
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import keras
import tensorflow as tf

from infer_callbacks._util import check_named_specs, find_keras_layers
from infer_callbacks.towers.spec import TowerContext, get_current_tower_context

__all__ = ["ModelDesc", "DescModel", "desc_tower"]


class ModelDesc:
    """A model described the tensorpack way.

    Override ``inputs()`` (a list of named ``tf.TensorSpec``, batch dimension
    ``None``), ``build_graph(*inputs)`` (called under a
    :class:`~infer_callbacks.TowerContext`; returns the scalar cost to
    minimize, and may name tensors with ``tf.identity(t, name=...)``), and
    ``optimizer()``. Keep layers as attributes created in ``__init__`` (e.g. a
    ``keras.Sequential``): every tower shares them, and checkpoints name their
    variables by attribute (``net/0-kernel``). Let them build on their first
    call (no ``keras.Input``), so that the trainer creates their variables
    under its strategy. Inside ``build_graph``, :attr:`training` tells the
    training graph from the inference tower (tensorpack's ``self.training``).

    Example:

    ```python
    class Model(ModelDesc):
        def __init__(self):
            self.net = keras.Sequential([keras.layers.Dense(10)])
        def inputs(self):
            return [tf.TensorSpec((None, 64), tf.float32, "x"),
                    tf.TensorSpec((None,), tf.int32, "label")]
        def build_graph(self, x, label):
            logits = self.net(x, training=self.training)
            return tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits), name="cost")
        def optimizer(self):
            return keras.optimizers.SGD(0.1)
    ```
    """

    @property
    def training(self) -> bool:
        """Whether ``build_graph`` is building the training graph: ``True``
        under the trainer's training step, ``False`` in the inference tower
        (runners, predictors, exports), as in tensorpack. It reads
        :func:`~infer_callbacks.get_current_tower_context`; outside any tower
        context (``build_graph`` called by hand) it is ``False``, Keras's
        default for a layer called without ``training`` (tensorpack raised).
        Read-only."""
        ctx = get_current_tower_context()
        return bool(ctx.is_training) if ctx is not None else False

    def inputs(self) -> list[tf.TensorSpec]:
        raise NotImplementedError(f"{type(self).__name__} must override inputs().")

    def build_graph(self, *inputs: tf.Tensor) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must override build_graph(*inputs).")

    def optimizer(self):
        raise NotImplementedError(f"{type(self).__name__} must override optimizer().")

    def get_input_signature(self) -> list[tf.TensorSpec]:
        """``inputs()``, checked: named ``tf.TensorSpec`` with unique names."""
        return check_named_specs(list(self.inputs()), f"{type(self).__name__}.inputs()")

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.get_input_signature()]


def desc_tower(desc: ModelDesc) -> Callable[..., dict]:
    """The inference tower of ``desc``: ``build_graph(*inputs)`` under
    ``TowerContext(is_training=False)``, a returned cost named ``cost`` (a
    returned dict is passed through).

    The function's parameters are named after ``desc.inputs()`` (when they
    are Python identifiers) and it carries ``input_names``, so fetch names
    such as ``"label"`` resolve to the batch elements.

    Example:

    ```python
    tower = desc_tower(Model())
    out = tower(x, label)          # {"cost": <scalar>}
    ```
    """
    names = desc.input_names

    def tower(*inputs):
        with TowerContext("infer", is_training=False):
            out = desc.build_graph(*inputs)
        if out is None or isinstance(out, dict):
            return out
        return {"cost": out}

    if all(n.isidentifier() for n in names):
        tower.__signature__ = inspect.Signature(
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    tower.input_names = list(names)
    tower.__name__ = f"{type(desc).__name__}_inference_tower"
    return tower


class DescModel(keras.Model):
    """The Keras face of a :class:`ModelDesc`.

    It holds the ModelDesc's layers (so ``weights`` and ``get_weights`` cover
    them), the optimizer the trainer gives it and ``stop_training``, which is
    what Keras callbacks read from ``self.model``. Calling it runs
    ``build_graph`` and returns the cost. Runners and predictors ask
    :meth:`inference_tower` for the inference function.

    Args:
        desc: the :class:`ModelDesc`.

    Example:

    ```python
    model = DescModel(Model())
    tower = model.inference_tower()    # what InferenceRunner runs by default
    ```
    """

    def __init__(self, desc: ModelDesc):
        if not isinstance(desc, ModelDesc):
            raise TypeError(f"DescModel wraps a ModelDesc. Received: desc={desc!r}")
        super().__init__(name=type(desc).__name__)
        self.desc_layers = find_keras_layers(list(vars(desc).values()))
        object.__setattr__(self, "_desc", desc)

    @property
    def desc(self) -> ModelDesc:
        """The wrapped :class:`ModelDesc`."""
        return self._desc

    @property
    def input_signature(self) -> list[tf.TensorSpec]:
        """The ModelDesc's checked ``inputs()``."""
        return self._desc.get_input_signature()

    def call(self, *inputs, training=False):
        return self.cost(list(inputs), training=training)

    def cost(self, inputs, training: bool):
        """``build_graph(*inputs)`` under a TowerContext (without Keras's
        ``__call__`` machinery)."""
        with TowerContext("train" if training else "infer", is_training=bool(training)):
            return self._desc.build_graph(*inputs)

    def inference_tower(self) -> Callable[..., dict]:
        """The tower function (``build_graph`` in inference mode); see
        :func:`desc_tower`. A new function each call, bound to this model."""
        return desc_tower(self._desc)
