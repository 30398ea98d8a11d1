"""After training: ``OfflinePredictor`` and ``get_predictor``.

A :class:`~infer_callbacks.PredictConfig` says which model, which weights,
which inputs are fed and which outputs are fetched. An
:class:`OfflinePredictor` turns it into one traced ``tf.function`` (batch
dimension ``None``: any batch size, no retrace) that takes numpy and returns
numpy. :class:`~infer_callbacks.ModelExporter` exports the same function.

Output names resolve by the runner's rules (see :class:`~infer_callbacks.towers.spec.TowerSpec`):
a key of the dict the tower returns, an input name, or a tensor named in the
tower with ``tf.identity(t, name=...)``.

Weights are restored by :mod:`infer_callbacks.predict.restore` (either
layout, every mismatch reported: :class:`CheckpointMismatchError`); a
predictor's ``device=`` is resolved by :mod:`infer_callbacks.predict.placement`.
Both names stay importable from here.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from infer_callbacks.checkpoints.mismatch import CheckpointMismatchError
from infer_callbacks.distribute.devices import canonical_device
from infer_callbacks.predict.config import PredictConfig
from infer_callbacks.predict.placement import predictor_device
from infer_callbacks.predict.restore import restore_weights
from infer_callbacks.towers.model_desc import DescModel, ModelDesc
from infer_callbacks.towers.spec import TowerSpec, UnknownFetchError

__all__ = [
    "PredictConfig",
    "OfflinePredictor",
    "get_predictor",
    "predictor_device",
    "CheckpointMismatchError",
    "restore_weights",
]


def _depends_on(tensor: tf.Tensor, targets: dict) -> list[str]:
    """Names in ``targets`` (op -> name) that ``tensor`` is computed from."""
    found, seen, stack = [], set(), [tensor.op]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        if op in targets:
            found.append(targets[op])
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return found


class OfflinePredictor:
    """Numpy in, numpy out: one traced ``tf.function`` over a :class:`PredictConfig`.

    The function is traced once, with the batch dimension ``None``, so any
    batch size runs without retracing (:attr:`tracing_count` stays 1). The
    weights are restored once, when the predictor is built.

    Args:
        config: a :class:`PredictConfig`.
        device: the device to trace and run the function on (an existing
            device's name, see :func:`predictor_device`); ``None``:
            TensorFlow's placement.

    Example:

    ```python
    predictor = OfflinePredictor(PredictConfig(model=model, session_init="ckpt-12"))
    (probs,) = predictor(x_batch)          # a list, in output_names order
    (probs,) = predictor(input=x_batch)    # or by input name
    ```
    """

    def __init__(self, config: PredictConfig, *, device: str | None = None):
        if not isinstance(config, PredictConfig):
            raise TypeError(f"OfflinePredictor needs a PredictConfig. Received: {config!r}")
        self.config = config
        self.device: str | None = None if device is None else canonical_device(device)
        specs = config.input_signature
        self._fed_specs = [next(s for s in specs if s.name == n) for n in config.input_names]
        self._tower = TowerSpec(config.tower_func, tuple(specs), input_names=[s.name for s in specs])
        self.output_names: list[str] = list(config.output_names or [])
        self.input_names: list[str] = list(config.input_names)
        created: list = []

        def record(next_creator, **kwargs):
            variable = next_creator(**kwargs)
            created.append(variable)
            return variable

        # autograph=False, as the runner traces towers: errors surface as raised.
        self._function = tf.function(self._serve, input_signature=self._fed_specs, autograph=False)
        with tf.variable_creator_scope(record):
            self._concrete = self._function.get_concrete_function()  # checks names
        if created:
            # The trace built the model's variables; tf.function would trace once
            # more on the first call (to check no more are created). Start afresh.
            self._function = tf.function(self._serve, input_signature=self._fed_specs, autograph=False)
            self._concrete = self._function.get_concrete_function()
        if config.session_init is not None:
            restore_weights(config.model, config.session_init, ignore_mismatch=config.ignore_mismatch)

    def _placement(self):
        return tf.device(self.device) if self.device is not None else contextlib.nullcontext()

    def _serve(self, *fed: tf.Tensor) -> dict[str, tf.Tensor]:
        with self._placement():  # inside the trace, so that every op is placed there
            return self._serve_here(*fed)

    def _serve_here(self, *fed: tf.Tensor) -> dict[str, tf.Tensor]:
        fed_by_name = dict(zip(self.config.input_names, fed))
        batch = None
        for t in fed:
            if t.shape.rank:
                batch = tf.shape(t)[0]
                break
        placeholders: dict[tf.Operation, str] = {}
        inputs = []
        for spec in self.config.input_signature:
            if spec.name in fed_by_name:
                inputs.append(fed_by_name[spec.name])
                continue
            # Not fed: a stand-in of the right structure; no output may use it (checked below).
            dims = [batch if i == 0 and batch is not None else (d if d is not None else 1)
                    for i, d in enumerate(spec.shape.as_list())] if spec.shape.rank is not None else []
            stand_in = tf.zeros(tf.stack(dims) if dims else [], spec.dtype, name=f"unfed_{spec.name}")
            placeholders[stand_in.op] = spec.name
            inputs.append(stand_in)
        outputs, ops = self._tower._call(tuple(inputs))
        if self.config.output_names is None:
            if not outputs:
                raise ValueError(
                    "PredictConfig(output_names=...) is required: the tower returns no dict. "
                    f"Available names: {self._tower.available_names(outputs, ops)}.")
            self.output_names = list(outputs)
        try:
            found = self._tower.resolve(tuple(inputs), self.output_names, outputs, ops)
        except UnknownFetchError as e:
            raise UnknownFetchError(
                e.name, f"Unknown output name {e.name!r} in output_names. Valid names: "
                f"{self._tower.available_names(outputs, ops)}.") from None
        result = {}
        for name in self.output_names:
            value = tf.convert_to_tensor(found[name])
            unfed = _depends_on(value, placeholders)
            if unfed:
                raise ValueError(
                    f"Output {name!r} depends on input(s) {sorted(set(unfed))}, which are not in "
                    f"input_names={self.config.input_names}. Add them to input_names.")
            result[name] = value
        return result

    # -- public -------------------------------------------------------------

    @property
    def input_signature(self) -> list:
        """The ``tf.TensorSpec`` of each fed input, in ``input_names`` order."""
        return list(self._fed_specs)

    def __call__(self, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        """Run one batch. Inputs positionally (``input_names`` order) or by
        name; returns numpy arrays in ``output_names`` order."""
        if len(args) > len(self.input_names):
            raise TypeError(f"The predictor takes {len(self.input_names)} inputs "
                            f"{self.input_names}; received {len(args)} positional arguments.")
        values = dict(zip(self.input_names, args))
        for name, value in kwargs.items():
            if name not in self.input_names:
                raise ValueError(f"Unknown input name {name!r}. Valid input names: {self.input_names}.")
            if name in values:
                raise TypeError(f"Input {name!r} given both positionally and by name.")
            values[name] = value
        missing = [n for n in self.input_names if n not in values]
        if missing:
            raise TypeError(f"Missing input(s) {missing}; the predictor takes {self.input_names}.")
        tensors = [self._to_tensor(values[spec.name], spec) for spec in self._fed_specs]
        out = self._function(*tensors)
        return [out[name].numpy() for name in self.output_names]

    @staticmethod
    def _to_tensor(value: Any, spec: tf.TensorSpec) -> tf.Tensor:
        if spec.dtype == tf.string:
            tensor = tf.convert_to_tensor(value, tf.string)
        else:
            array = np.asarray(value)
            target = np.dtype(spec.dtype.as_numpy_dtype)
            if array.dtype != target:
                if not np.can_cast(array.dtype, target, casting="same_kind"):
                    raise TypeError(
                        f"Input {spec.name!r} expects {target}, received {array.dtype}: casting "
                        "would silently change values (e.g. floats in [0, 1] to uint8 zeros). "
                        f"Convert it yourself, e.g. x.astype({str(target)!r}).")
                array = array.astype(target)
            tensor = tf.convert_to_tensor(array)
        if not spec.shape.is_compatible_with(tensor.shape):
            raise ValueError(f"Input {spec.name!r} must have shape {spec.shape} (None: any size). "
                             f"Received shape {tuple(tensor.shape)}.")
        return tensor

    @property
    def tracing_count(self) -> int:
        """How many times the prediction function was traced (stays 1)."""
        return self._function.experimental_get_tracing_count()

    @property
    def concrete_function(self):
        """The traced function: named inputs in, ``{output_name: tensor}`` out."""
        return self._concrete

    @property
    def function(self) -> tf.types.experimental.GenericFunction:
        """The ``tf.function`` (with its input signature) behind the predictor."""
        return self._function

    def __repr__(self) -> str:
        where = "" if self.device is None else f", device={self.device!r}"
        return f"OfflinePredictor(inputs={self.input_names}, outputs={self.output_names}{where})"


def get_predictor(model: ModelDesc | DescModel | keras.Model, input_names: Sequence[str] | None = None,
                  output_names: Sequence[str] | None = None, *, device: int | str | None = None,
                  **kwargs: Any) -> OfflinePredictor:
    """A predictor on ``model``'s current weights (tensorpack's
    ``trainer.get_predictor``): ``OfflinePredictor(PredictConfig(model, None,
    input_names, output_names, **kwargs))``. The weights are shared, not
    copied, so it sees later training steps.

    ``device`` places the predictor as tensorpack's ``device=`` did: an int
    GPU id (``-1``: ``'/cpu:0'``) or a device string; the function is traced
    and run under ``tf.device(...)``. A GPU id that this machine lacks falls
    back to TensorFlow's placement with a warning (see :func:`predictor_device`).

    Example:

    ```python
    predict = get_predictor(desc, ["x"], ["prob"], device=0)
    (prob,) = predict(x_batch)
    ```
    """
    return OfflinePredictor(PredictConfig(model, None, input_names, output_names, **kwargs),
                            device=predictor_device(device))
