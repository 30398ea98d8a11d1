"""Keras's compiled loss of one validation batch, as exact sums.

The loss half of the default Keras tower (:mod:`~infer_callbacks.towers.keras_tower`):
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

Example:

>>> import keras, tensorflow as tf
>>> inputs = keras.Input((3,))
>>> model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
>>> model.compile(loss="mse")
>>> ts = terms(model, ["output"], [model(tf.zeros((2, 3)))], tf.ones((2, 1)), None, None)
>>> sorted(loss_outputs(model, ts, tf.constant(2)))
['loss', 'loss#den', 'loss#num']
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import keras
import tensorflow as tf

from infer_callbacks.towers.spec import exact_keys

__all__ = ["Term", "terms", "loss_outputs", "loss_weights", "loss_name", "keras_mask", "align",
           "broadcast_weight", "row_sums", "row_means"]


class Term(NamedTuple):
    """One output's part of the compiled loss."""
    name: str  # the output's name, as `evaluate` names it
    y_true: Any
    y_pred: tf.Tensor
    loss: Any  # a keras.losses.Loss, a loss function, or None (no compiled loss)
    weight: float
    sample_weight: Any


def loss_name(loss: Any) -> str:
    """A loss's name, lower-cased without ``_`` (``"sparsecategoricalcrossentropy"``)."""
    name = getattr(loss, "name", None) or getattr(loss, "__name__", None) or str(loss)
    return str(name).lower().replace("_", "")


def keras_mask(t: Any) -> tf.Tensor | None:
    """The Keras mask of ``t``, if any."""
    # Keras 3.15 has no public getter; `_keras_mask` is the attribute that
    # Keras's masking guide documents.
    return getattr(t, "_keras_mask", None)


def align(a: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Keras's rule for ranks that differ by one: drop or add a last axis of 1."""
    ra, rb = a.shape.rank, b.shape.rank
    if ra == rb + 1 and a.shape[-1] == 1:
        return (a, tf.expand_dims(b, -1)) if rb == 1 else (tf.squeeze(a, -1), b)
    if rb == ra + 1 and b.shape[-1] == 1:
        return (tf.expand_dims(a, -1), b) if ra == 1 else (a, tf.squeeze(b, -1))
    return a, b


def broadcast_weight(weight: tf.Tensor | None, values: tf.Tensor) -> tf.Tensor:
    """Per-element weights of ``values``; a per-example weight spreads over
    the example's elements (Keras 3.15 raises for ``[B]`` weights on ``[B, T]``
    losses, or multiplies along the wrong axis when ``B == T``)."""
    if weight is None:
        return tf.ones_like(values)
    values, weight = align(values, tf.cast(weight, values.dtype))
    while weight.shape.rank < values.shape.rank:
        weight = tf.expand_dims(weight, -1)
    return tf.broadcast_to(weight, tf.shape(values))


def row_sums(values: tf.Tensor) -> tf.Tensor:
    """Sum every axis but the first: ``[B, ...] -> [B]``."""
    return tf.reduce_sum(values, axis=list(range(1, values.shape.rank))) if values.shape.rank > 1 else values


def _resolve_loss(spec: Any, y_true: Any, y_pred: tf.Tensor) -> Any:
    if spec is None:
        return None
    if isinstance(spec, str) and spec.lower() in ("crossentropy", "ce"):  # Keras picks by shapes
        if y_pred.shape[-1] == 1:
            spec = "binary_crossentropy"
        elif y_true.shape.rank < y_pred.shape.rank or (y_true.shape[-1] == 1 and y_pred.shape[-1] > 1):
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
    if ("sparse" in loss_name(term.loss) and y_t.shape.rank == y_p.shape.rank
            and y_t.shape[-1] == y_p.shape[-1] and (y_p.shape[-1] or 0) > 1):
        hint = (" The labels look one-hot: compile with CategoricalCrossentropy, or give integer "
                "class ids (`np.argmax(y, axis=-1)`).")
    return ValueError(
        f"The compiled loss {_describe(term.loss)} of output {term.name!r} cannot take the labels of "
        f"the validation set's batches: labels of shape {tuple(y_t.shape)} ({y_t.dtype.name}) for an "
        f"output of shape {tuple(y_p.shape)}.{hint} Keras said: {error}")


def _elementwise_loss(term: Term) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Unreduced loss values and their mask, as ``Loss.__call__`` sees them."""
    loss = term.loss
    dtype = getattr(loss, "dtype", None) or keras.backend.floatx()
    mask = keras_mask(term.y_pred)
    y_p = tf.cast(term.y_pred, dtype)
    y_t = tf.cast(tf.convert_to_tensor(term.y_true), dtype)
    try:
        if isinstance(loss, keras.losses.Loss):
            values = loss.call(y_t, y_p)
        else:  # a plain function, called as Keras wraps it
            values = loss(*align(y_t, y_p))
    except (ValueError, tf.errors.InvalidArgumentError) as e:
        raise _loss_failed(term, e) from e
    out_mask = keras_mask(values)
    values = tf.cast(values, tf.float32)
    if mask is not None and out_mask is not None:
        mask = tf.logical_and(tf.cast(mask, tf.bool), tf.cast(out_mask, tf.bool))
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


def terms(model: keras.Model, names: list[str], preds: list[tf.Tensor], y: Any, sw: Any,
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
            y_t = tf.convert_to_tensor(y_t)
            found.append(Term(name, y_t, y_p, _resolve_loss(spec, y_t, y_p),
                              1.0 if weight is None else float(weight), w))
    return found


def _loss_sums(term: Term, batch_size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, bool]:
    """Per-example ``(numerator, denominator, den_is_one)`` of one term."""
    values, mask = _elementwise_loss(term)
    if values.shape.rank == 0:  # one value per batch: each example carries it
        num = tf.fill([batch_size], values)
        if term.sample_weight is not None:
            num *= row_means(tf.cast(term.sample_weight, tf.float32), batch_size)
        return num, tf.ones([batch_size]), True
    if mask is None:  # each example's mean over its positions (Keras's sum_over_batch_size)
        if term.sample_weight is not None:
            values = values * broadcast_weight(term.sample_weight, values)
        return row_means(values, batch_size), tf.ones([batch_size]), True
    weight = broadcast_weight(term.sample_weight, values)
    valid = broadcast_weight(mask, values)
    return row_sums(values * weight * valid), row_sums(valid), False


def row_means(values: tf.Tensor, batch_size: tf.Tensor | None = None) -> tf.Tensor:
    """Mean over every axis but the first: ``[B, ...] -> [B]``; ``[]`` -> ``[B]``."""
    if values.shape.rank == 0:
        return tf.fill([batch_size], values)
    if values.shape.rank == 1:
        return values
    return tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))


def loss_weights(model: keras.Model) -> Any:
    """``compile(loss_weights=...)``, read through the public compile config
    (eagerly: it serializes the optimizer)."""
    try:
        with tf.init_scope(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "serializing a lambda"
            return (model.get_compile_config() or {}).get("loss_weights")
    except Exception:  # a compile config that does not serialize: Keras's own copy
        return getattr(getattr(model, "_compile_loss", None), "_user_loss_weights", None)


def loss_outputs(model: keras.Model, found: list[Term], batch_size: tf.Tensor) -> dict:
    """``loss`` with its exact pairs, and ``<output>_loss`` for several terms."""
    if not found:
        return {}
    out, nums, dens, plain = {}, [], [], True
    for term in found:
        num, den, one = _loss_sums(term, batch_size)
        plain = plain and one
        if len(found) > 1:
            name = f"{term.name}_loss"
            out[name] = num if one else tf.math.divide_no_nan(num, den)
            out[exact_keys(name)[0]], out[exact_keys(name)[1]] = num, den
        nums.append(num * term.weight)
        dens.append(den)
    extra = [tf.reduce_sum(tf.cast(v, tf.float32)) for v in model.losses]
    if extra:
        nums.append(tf.fill([batch_size], tf.add_n(extra)))
        dens.append(tf.ones([batch_size]))
    num, den = tf.stack(nums, axis=1), tf.stack(dens, axis=1)
    if plain and len(nums) == 1:  # every den is 1
        out["loss"] = nums[0]
    else:
        out["loss"] = tf.reduce_sum(tf.math.divide_no_nan(num, den), axis=1)
    out[exact_keys("loss")[0]], out[exact_keys("loss")[1]] = num, den
    return out
