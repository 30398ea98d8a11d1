"""``PredictConfig``: which model, which weights, which inputs are fed and
which outputs are fetched, checked when it is made (the predictor and the
exporter in ``predictor.py`` / ``export.py`` turn it into a function)."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from infer_callbacks.checkpoints import layout as checkpoint
from infer_callbacks._util import check_named_specs, require_tensorflow
from infer_callbacks.checkpoints.keras_weights import is_keras_weights_path
from infer_callbacks.towers.model_desc import DescModel, ModelDesc, desc_tower
from infer_callbacks.towers.keras_tower import keras_tower_func

__all__ = ["PredictConfig"]


def _relax_batch(spec: tf.TensorSpec) -> tf.TensorSpec:
    shape = spec.shape
    if shape.rank:
        shape = tf.TensorShape([None]).concatenate(shape[1:])
    return tf.TensorSpec(shape, spec.dtype, spec.name)


def _check_signature(specs: Any, what: str) -> list[tf.TensorSpec]:
    return [_relax_batch(s) for s in check_named_specs(specs, what)]


def _keras_signature(model: keras.Model) -> list[tf.TensorSpec]:
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        raise ValueError(
            f"Cannot tell the inputs of {type(model).__name__} {model.name!r} (a subclassed or "
            "unbuilt model). Pass input_signature=[tf.TensorSpec((None, ...), tf.float32, 'input')].")
    if len(inputs) == 1:
        names = ["input"]  # the runner's name for a Keras model's input
    else:
        names = [t.name for t in inputs]
    return [tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype, n) for t, n in zip(inputs, names)]


def _keras_tower(model: keras.Model, num_x: int) -> Callable:
    tower = keras_tower_func(model)

    def keras_tower(*inputs):
        x = inputs[0] if num_x == 1 else list(inputs[:num_x])
        return tower(x, *inputs[num_x:])

    return keras_tower


class PredictConfig:
    """What to predict with: the model, its weights, the inputs and outputs.

    Args:
        model: a :class:`~infer_callbacks.ModelDesc` (its ``build_graph`` runs
            under ``TowerContext(is_training=False)``; a returned cost is named
            ``cost``) or a ``keras.Model`` (the runner's default tower: the
            output is ``output``; the single input is ``input``).
        session_init: the weights: a TF2 checkpoint prefix
            (``train_log/checkpoints/ckpt-12``), a checkpoint directory (its
            latest checkpoint), a Keras ``.weights.h5`` file or the weights of a
            ``.keras`` file. ``None`` keeps the model's current weights.
            Checkpoints must be in :mod:`infer_callbacks.checkpoints.layout`'s layout
            (``ModelSaver``, ``MinSaver``/``MaxSaver``, ``checkpoint.save``).
        input_names: the inputs the predictor is fed, in call order; by default
            every input of the signature. Outputs may not depend on the others.
        output_names: what it returns, in order; resolved like the runner's
            fetches (returned dict keys, input names, ``tf.identity`` names). By
            default the Keras model's outputs, or every key of the dict the
            tower returns.
        tower_func: a different inference function ``tower_func(*inputs)``
            (e.g. decoding images inside the graph); the model still provides
            the variables that ``session_init`` restores.
        input_signature: named ``tf.TensorSpec`` for the tower's inputs; by
            default ``ModelDesc.inputs()`` or the Keras model's inputs. The
            batch dimension is always relaxed to ``None``.
        ignore_mismatch: restore the matching variables and warn about
            missing, unused or mis-shaped ones instead of raising
            :class:`CheckpointMismatchError`.

    Example:

    ```python
    config = PredictConfig(model=Model(), session_init="train_log/checkpoints",
                           input_names=["image"], output_names=["logits", "prob"])
    logits, prob = OfflinePredictor(config)(images)
    ```
    """

    def __init__(self, model: ModelDesc | keras.Model | None = None,
                 session_init: str | os.PathLike | None = None,
                 input_names: Sequence[str] | None = None,
                 output_names: Sequence[str] | None = None,
                 tower_func: Callable[..., Any] | None = None,
                 input_signature: Sequence[tf.TensorSpec] | None = None, *,
                 ignore_mismatch: bool = False):
        require_tensorflow("PredictConfig / OfflinePredictor",
                           instead="Use model.predict or a jax.jit of model.stateless_call instead.")
        if isinstance(model, DescModel):  # the trainer's Keras face of a ModelDesc
            model = model.desc
        if model is not None and not isinstance(model, (ModelDesc, keras.Model)):
            raise TypeError(f"`model` must be a ModelDesc or a keras.Model. Received: model={model!r}")
        if tower_func is not None and not callable(tower_func):
            raise TypeError(f"`tower_func` must be callable. Received: tower_func={tower_func!r}")
        if model is None and tower_func is None:
            raise ValueError("PredictConfig needs `model` (a ModelDesc or keras.Model), or "
                             "`tower_func` with `input_signature`.")
        if session_init is not None:
            session_init = os.fspath(session_init)
            if model is None:
                raise ValueError(
                    f"session_init={session_init!r} needs `model=` to match the checkpoint's "
                    "variables against.")
            # Fail now on a path that does not exist; the latest checkpoint of a
            # directory is chosen again when the predictor is built.
            if is_keras_weights_path(session_init):
                if not os.path.isfile(session_init):
                    raise FileNotFoundError(f"Keras weights file {session_init!r} does not exist.")
            else:
                checkpoint.resolve(session_init)
            if is_keras_weights_path(session_init) and not isinstance(model, keras.Model):
                raise TypeError(
                    f"{session_init!r} is a Keras weights file; it needs a keras.Model. For a "
                    "ModelDesc, restore a ModelSaver checkpoint.")
        self.model = model
        self.session_init = session_init
        self.ignore_mismatch = bool(ignore_mismatch)

        if input_signature is not None:
            self.input_signature = _check_signature(input_signature, "input_signature")
        elif isinstance(model, ModelDesc):
            self.input_signature = _check_signature(model.get_input_signature(),
                                                    f"{type(model).__name__}.inputs()")
        elif isinstance(model, keras.Model):
            self.input_signature = _keras_signature(model)
        else:
            raise ValueError("`tower_func` without a model needs `input_signature=[tf.TensorSpec"
                             "((None, ...), tf.float32, 'name'), ...]`.")
        all_inputs = [s.name for s in self.input_signature]

        self.keras_default = tower_func is None and isinstance(model, keras.Model)
        if tower_func is not None:
            self.tower_func = tower_func
        elif isinstance(model, ModelDesc):
            self.tower_func = desc_tower(model)
        else:
            num_x = len(all_inputs)
            if input_signature is not None:
                try:
                    num_x = len(_keras_signature(model))
                except ValueError:  # subclassed: one x
                    num_x = 1
            if len(all_inputs) > num_x + 2:
                raise ValueError(
                    f"A Keras model's tower takes (x, y, sample_weight): at most {num_x + 2} inputs. "
                    f"Received input_signature names {all_inputs}.")
            self.tower_func = _keras_tower(model, num_x)

        if input_names is None:
            input_names = all_inputs
        if isinstance(input_names, str):
            input_names = [input_names]
        input_names = list(input_names)
        for name in input_names:
            if name not in all_inputs:
                raise ValueError(f"Unknown input name {name!r} in input_names. Valid input names: "
                                 f"{all_inputs}.")
        if len(set(input_names)) != len(input_names):
            raise ValueError(f"input_names has duplicates: {input_names}")
        self.input_names = input_names

        if isinstance(output_names, str):
            output_names = [output_names]
        if output_names is not None:
            output_names = list(output_names)
            if not output_names:
                raise ValueError("output_names is empty: name at least one output.")
            if len(set(output_names)) != len(output_names):
                raise ValueError(f"output_names has duplicates: {output_names}")
        elif self.keras_default:
            names = list(getattr(model, "output_names", None) or [])
            output_names = ["output"] if len(names) <= 1 else names
        self.output_names = output_names  # None: every key the tower returns

    def __repr__(self) -> str:
        return (f"PredictConfig(model={type(self.model).__name__}, session_init={self.session_init!r}, "
                f"input_names={self.input_names}, output_names={self.output_names})")
