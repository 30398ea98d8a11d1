"""Keras's compiled loss of one validation batch, as exact sums.

The loss half of the default Keras tower (:mod:`~infer_callbacks.towers.keras_tower`;
the shape, mask and weight rules both use are in
:mod:`~infer_callbacks.towers.keras_shapes`, and importable from here):
which labels, weights and ``Loss`` go with which output (:func:`terms`), and
each term's per-example numerator and denominator (:func:`loss_outputs`), so
that ``sum_k(sum_i num[i, k] / sum_i den[i, k])`` over the batches of a
validation set is what ``model.evaluate`` reports:

- a masked loss: the mean over the valid elements of the whole set (exact
  for any batch split);
- an unmasked loss with several values per example (per-token losses,
  padded sequences): each example's mean over its positions (sample weights
  applied), then the mean over examples, as ``evaluate`` on the same batching;
- a loss that returns one scalar per batch: that value for each example of
  the batch (times its sample weight), i.e. the batch-size-weighted mean of
  the per-batch values, as ``evaluate`` on the same batching.

Written on ``keras.ops`` and ``keras.tree``, the same code runs on every
Keras backend: eagerly, in ``tf.function``, or in ``jax.jit`` under a
``keras.StatelessScope`` (give it ``collect_losses=True``, as Keras's
``stateless_call(return_losses=True)`` does, so that ``model.losses`` holds
the call's activity regularizers and ``add_loss`` terms). Two details exist
only on TensorFlow and are used only there (:func:`_outside_traces`,
:func:`_shape_errors`).

Example:

>>> import keras
>>> inputs = keras.Input((3,))
>>> model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
>>> model.compile(loss="mse")
>>> ts = terms(model, ["output"], [model(keras.ops.zeros((2, 3)))], keras.ops.ones((2, 1)), None, None)
>>> sorted(loss_outputs(model, ts, 2))
['loss', 'loss#den', 'loss#num']
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, NamedTuple

import keras
from keras import ops

from infer_callbacks.towers.keras_shapes import (align, broadcast_weight, keras_mask, rank, row_means,
                                                 row_sums)
from infer_callbacks.towers.spec import exact_keys

__all__ = ["Term", "terms", "loss_outputs", "loss_weights", "loss_name", "keras_mask", "align",
           "broadcast_weight", "row_sums", "row_means", "rank"]


class Term(NamedTuple):
    """One output's part of the compiled loss."""
    name: str  # the output's name, as `evaluate` names it
    y_true: Any
    y_pred: Any
    loss: Any  # a keras.losses.Loss, a loss function, or None (no compiled loss)
    weight: float
    sample_weight: Any


# ---------------------------------------------------------------- TensorFlow-only details

def _on_tensorflow() -> bool:
    return keras.backend.backend() == "tensorflow"


def _outside_traces():
    """TensorFlow: lift out of any ``tf.function`` being traced (``tf.init_scope``).
    Other backends read Python state eagerly anyway."""
    if _on_tensorflow():
        import tensorflow as tf
        return tf.init_scope()
    return contextlib.nullcontext()


def _shape_errors() -> tuple[type[Exception], ...]:
    """What a loss raises for labels it cannot take: ``ValueError`` at trace
    time on every backend (``TypeError`` from JAX's shape checks), plus
    TensorFlow's runtime ``InvalidArgumentError`` in eager mode."""
    if _on_tensorflow():
        import tensorflow as tf
        return ValueError, TypeError, tf.errors.InvalidArgumentError
    return ValueError, TypeError


# ---------------------------------------------------------------- names

def loss_name(loss: Any) -> str:
    """A loss's name, lower-cased without ``_`` (``"sparsecategoricalcrossentropy"``)."""
    name = getattr(loss, "name", None) or getattr(loss, "__name__", None) or str(loss)
    return str(name).lower().replace("_", "")


# ---------------------------------------------------------------- the loss of each output

def _resolve_loss(spec: Any, y_true: Any, y_pred: Any) -> Any:
    if spec is None:
        return None
    if isinstance(spec, str) and spec.lower() in ("crossentropy", "ce"):  # Keras picks by shapes
        if y_pred.shape[-1] == 1:
            spec = "binary_crossentropy"
        elif rank(y_true) < rank(y_pred) or (y_true.shape[-1] == 1 and y_pred.shape[-1] > 1):
            spec = "sparse_categorical_crossentropy"
        else:
            spec = "categorical_crossentropy"
    return keras.losses.get(spec) if isinstance(spec, (str, dict)) else spec


def _describe(loss: Any) -> str:
    return type(loss).__name__ if isinstance(loss, keras.losses.Loss) else getattr(loss, "__name__", repr(loss))


def _loss_failed(term: Term, error: Exception) -> ValueError:
    """The error of a compiled loss that cannot take the validation batches' labels."""
    y_t, y_p = term.y_true, term.y_pred
    hint = ""
    if ("sparse" in loss_name(term.loss) and rank(y_t) == rank(y_p)
            and y_t.shape[-1] == y_p.shape[-1] and (y_p.shape[-1] or 0) > 1):
        hint = (" The labels look one-hot: compile with CategoricalCrossentropy, or give integer "
                "class ids (`np.argmax(y, axis=-1)`).")
    # the batch size as None: the same on every backend and batch (a JAX trace sees one)
    return ValueError(
        f"The compiled loss {_describe(term.loss)} of output {term.name!r} cannot take the labels of "
        f"the validation set's batches: labels of shape {(None, *tuple(y_t.shape)[1:])} "
        f"({keras.backend.standardize_dtype(y_t.dtype)}) for an output of shape "
        f"{(None, *tuple(y_p.shape)[1:])}.{hint} Keras said: {error}")


def _elementwise_loss(term: Term) -> tuple[Any, Any]:
    """Unreduced loss values and their mask, as ``Loss.__call__`` sees them."""
    loss = term.loss
    dtype = getattr(loss, "dtype", None) or keras.backend.floatx()
    mask = keras_mask(term.y_pred)
    y_p = ops.cast(term.y_pred, dtype)
    y_t = ops.cast(ops.convert_to_tensor(term.y_true), dtype)
    try:
        if isinstance(loss, keras.losses.Loss):
            values = loss.call(y_t, y_p)
        else:  # a plain function, called as Keras wraps it
            values = loss(*align(y_t, y_p))
    except _shape_errors() as e:
        raise _loss_failed(term, e) from e
    out_mask = keras_mask(values)
    values = ops.cast(values, "float32")
    if mask is not None and out_mask is not None:
        mask = ops.logical_and(ops.cast(mask, "bool"), ops.cast(out_mask, "bool"))
    return values, (mask if mask is not None else out_mask)


def _per_output(structure: Any, names: list[str], what: str, *, replicate: bool) -> list:
    """``structure`` (dict by name, list by position, or one leaf) aligned with ``names``."""
    if structure is None:
        return [None] * len(names)
    if isinstance(structure, dict):
        unknown = sorted(set(map(str, structure)) - set(names))
        if unknown:
            raise ValueError(f"The {what} has keys {unknown} that are not outputs of the model. "
                             f"Valid keys: {names}. Received: {what}={structure!r}")
        return [structure.get(name) for name in names]
    if isinstance(structure, (list, tuple)) and len(structure) == len(names):
        return list(structure)
    if len(names) == 1 or replicate:
        return [structure] * len(names)
    raise ValueError(f"The {what} must have one entry per model output {names}. Received: {what}={structure!r}")


def terms(model: keras.Model, names: list[str], preds: list[Any], y: Any, sw: Any,
          weights_of_losses: Any) -> list[Term]:
    """One :class:`Term` per output that has labels in ``y``."""
    y_list = _per_output(y, names, "labels `y`", replicate=False)
    sw_list = _per_output(sw, names, "sample_weight", replicate=True)
    loss = getattr(model, "loss", None)
    weights = _per_output(weights_of_losses if loss is not None else None, names, "loss_weights",
                          replicate=True)
    losses = _per_output(loss, names, "compiled loss", replicate=True)
    found = []
    for name, y_t, y_p, spec, weight, w in zip(names, y_list, preds, losses, weights, sw_list):
        if y_t is not None:
            y_t = ops.convert_to_tensor(y_t)
            found.append(Term(name, y_t, y_p, _resolve_loss(spec, y_t, y_p),
                              1.0 if weight is None else float(weight), w))
    return found


def _loss_sums(term: Term, batch_size: Any) -> tuple[Any, Any, bool]:
    """Per-example ``(numerator, denominator, den_is_one)`` of one term."""
    values, mask = _elementwise_loss(term)
    ones = ops.ones((batch_size,), dtype="float32")
    if rank(values) == 0:  # one value per batch: each example carries it
        num = ones * values
        if term.sample_weight is not None:
            num = num * row_means(ops.cast(term.sample_weight, "float32"), batch_size)
        return num, ones, True
    if mask is None:  # each example's mean over its positions (Keras's sum_over_batch_size)
        if term.sample_weight is not None:
            values = values * broadcast_weight(term.sample_weight, values)
        return row_means(values, batch_size), ones, True
    weight = broadcast_weight(term.sample_weight, values)
    valid = broadcast_weight(mask, values)
    return row_sums(values * weight * valid), row_sums(valid), False


def loss_weights(model: keras.Model) -> Any:
    """``compile(loss_weights=...)``, read through the public compile config
    (eagerly: it serializes the optimizer)."""
    try:
        with _outside_traces(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "serializing a lambda"
            return (model.get_compile_config() or {}).get("loss_weights")
    except Exception:  # a compile config that does not serialize: Keras's own copy
        return getattr(getattr(model, "_compile_loss", None), "_user_loss_weights", None)


def loss_outputs(model: keras.Model, found: list[Term], batch_size: Any) -> dict:
    """``loss`` with its exact pairs, and ``<output>_loss`` for several terms.

    ``batch_size``: the batch's size, an int or a scalar tensor (dynamic in
    ``tf.function``)."""
    if not found:
        return {}
    out, nums, dens, plain = {}, [], [], True
    for term in found:
        num, den, one = _loss_sums(term, batch_size)
        plain = plain and one
        if len(found) > 1:
            name = f"{term.name}_loss"
            out[name] = num if one else ops.divide_no_nan(num, den)
            out[exact_keys(name)[0]], out[exact_keys(name)[1]] = num, den
        nums.append(num * term.weight)
        dens.append(den)
    extra = [ops.sum(ops.cast(v, "float32")) for v in model.losses]
    if extra:
        ones = ops.ones((batch_size,), dtype="float32")
        nums.append(ones * sum(extra[1:], extra[0]))
        dens.append(ones)
    num, den = ops.stack(nums, axis=1), ops.stack(dens, axis=1)
    if plain and len(nums) == 1:  # every den is 1
        out["loss"] = nums[0]
    else:
        out["loss"] = ops.sum(ops.divide_no_nan(num, den), axis=1)
    out[exact_keys("loss")[0]], out[exact_keys("loss")[1]] = num, den
    return out
