"""The default tower of a compiled Keras model: Keras's own loss, kept exact.

``keras_tower_func(model)`` returns ``tower(*batch) -> {name: tensor}`` for
batches ``x``, ``(x, y)`` or ``(x, y, sample_weight)``. The loss is the one
``model.evaluate`` reports: each compiled loss term through the Keras ``Loss``
object's unreduced ``call`` (``from_logits``, one-hot or sparse labels), the
output's Keras mask (``Embedding(mask_zero=True)`` ...), the sample weights,
``loss_weights``, and ``model.losses`` (weight and activity regularizers,
``add_loss``), which ``evaluate`` adds too. Sums are returned apart
(``n#num`` / ``n#den``, see :func:`~infer_callbacks.towers.spec.exact_keys`) so the
epoch value over any batch split equals Keras's value for the whole
validation set taken as one batch.

Example:

>>> import keras, tensorflow as tf
>>> inputs = keras.Input((3,))
>>> model = keras.Model(inputs, keras.layers.Dense(4, name="logits")(inputs))
>>> model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
>>> out = keras_tower_func(model)(tf.zeros((2, 3)), tf.constant([1, 2]))
>>> sorted(k for k in out if "#" not in k)
['logits', 'loss', 'output', 'wrong-top1']
>>> out["loss#num"].shape, out["wrong-top1#den"].shape
(TensorShape([2, 1]), TensorShape([2]))
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple

import keras
import tensorflow as tf

from infer_callbacks.towers.spec import SAMPLE_WEIGHT_KEY, exact_keys

__all__ = ["keras_tower_func"]

# Losses after which an output with >= 2 units is not a single-label
# classifier (regression, multi-label); names lower-cased without "_".
_NOT_CLASSIFICATION = frozenset({
    "meansquarederror", "mse", "meanabsoluteerror", "mae", "meanabsolutepercentageerror", "mape",
    "meansquaredlogarithmicerror", "msle", "huber", "logcosh", "cosinesimilarity", "poisson",
    "hinge", "squaredhinge", "binarycrossentropy", "bce", "binaryfocalcrossentropy", "dice",
    "tversky", "ctc", "circle",
})
_BINARY = frozenset({"binarycrossentropy", "bce", "binaryfocalcrossentropy"})


class _Term(NamedTuple):
    name: str  # the output's name, as `evaluate` names it
    y_true: Any
    y_pred: tf.Tensor
    loss: Any  # a keras.losses.Loss, a loss function, or None (no compiled loss)
    weight: float
    sample_weight: Any


def _loss_name(loss: Any) -> str:
    name = getattr(loss, "name", None) or getattr(loss, "__name__", None) or str(loss)
    return str(name).lower().replace("_", "")


def _keras_mask(t: Any) -> tf.Tensor | None:
    # Keras 3.15 has no public getter; `_keras_mask` is the attribute that
    # Keras's masking guide documents.
    return getattr(t, "_keras_mask", None)


def _align(a: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Keras's rule for ranks that differ by one: drop or add a last axis of 1."""
    ra, rb = a.shape.rank, b.shape.rank
    if ra == rb + 1 and a.shape[-1] == 1:
        return (a, tf.expand_dims(b, -1)) if rb == 1 else (tf.squeeze(a, -1), b)
    if rb == ra + 1 and b.shape[-1] == 1:
        return (tf.expand_dims(a, -1), b) if ra == 1 else (a, tf.squeeze(b, -1))
    return a, b


def _broadcast_weight(weight: tf.Tensor | None, values: tf.Tensor) -> tf.Tensor:
    """Per-element weights of ``values``; a per-example weight spreads over
    the example's elements (Keras 3.15 raises for ``[B]`` weights on ``[B, T]``
    losses, or multiplies along the wrong axis when ``B == T``)."""
    if weight is None:
        return tf.ones_like(values)
    values, weight = _align(values, tf.cast(weight, values.dtype))
    while weight.shape.rank < values.shape.rank:
        weight = tf.expand_dims(weight, -1)
    return tf.broadcast_to(weight, tf.shape(values))


def _rows(values: tf.Tensor) -> tf.Tensor:
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


def _elementwise_loss(loss: Any, y_true: Any, y_pred: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Unreduced loss values and their mask, as ``Loss.__call__`` sees them."""
    dtype = getattr(loss, "dtype", None) or keras.backend.floatx()
    mask = _keras_mask(y_pred)
    y_p = tf.cast(y_pred, dtype)
    y_t = tf.cast(tf.convert_to_tensor(y_true), dtype)
    if isinstance(loss, keras.losses.Loss):
        values = loss.call(y_t, y_p)
    else:  # a plain function, called as Keras wraps it
        values = loss(*_align(y_t, y_p))
    out_mask = _keras_mask(values)
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


def _terms(model: keras.Model, names: list[str], preds: list[tf.Tensor], y: Any, sw: Any,
           loss_weights: Any) -> list[_Term]:
    y_list = _per_output(y, names, "labels `y`", replicate=False)
    sw_list = _per_output(sw, names, "sample_weight", replicate=True)
    loss = getattr(model, "loss", None)
    weights = _per_output(loss_weights if loss is not None else None, names, "loss_weights",
                          replicate=True)
    losses = _per_output(loss, names, "compiled loss", replicate=True)
    terms = []
    for name, y_t, y_p, spec, weight, w in zip(names, y_list, preds, losses, weights, sw_list):
        if y_t is not None:
            y_t = tf.convert_to_tensor(y_t)
            terms.append(_Term(name, y_t, y_p, _resolve_loss(spec, y_t, y_p),
                               1.0 if weight is None else float(weight), w))
    return terms


def _loss_sums(term: _Term) -> tuple[tf.Tensor, tf.Tensor, bool]:
    """Per-example ``(sum of l*w*mask, number of valid elements, plain)`` of
    one term; ``plain``: one unweighted, unmasked value per example (the
    number is 1), the common case, built with the fewest ops."""
    values, mask = _elementwise_loss(term.loss, term.y_true, term.y_pred)
    if mask is None and term.sample_weight is None:
        return _rows(values), _rows(tf.ones_like(values)), values.shape.rank == 1
    weight = _broadcast_weight(term.sample_weight, values)
    valid = tf.ones_like(values) if mask is None else _broadcast_weight(mask, values)
    return _rows(values * weight * valid), _rows(valid), False


def _classifier_kind(term: _Term) -> tuple[str, float] | None:
    """``("sparse" | "onehot" | "binary", threshold)`` for a classifier output."""
    y_t, y_p = term.y_true, term.y_pred
    if not y_p.dtype.is_floating or y_p.shape.rank is None or y_p.shape.rank < 1 or y_t.shape.rank is None:
        return None
    classes, name = y_p.shape[-1], _loss_name(term.loss)
    if classes == 1:
        if term.loss is None or name not in _BINARY:
            return None
        logits = getattr(term.loss, "get_config", dict)().get("from_logits", False)
        return "binary", 0.0 if logits else 0.5
    if classes is None or classes < 2:
        return None
    if y_t.shape.rank == y_p.shape.rank - 1 or (y_t.shape.rank == y_p.shape.rank and y_t.shape[-1] == 1):
        return "sparse", 0.0
    if y_t.shape.rank == y_p.shape.rank and y_t.shape[-1] == classes and name not in _NOT_CLASSIFICATION:
        return "onehot", 0.0
    return None


def _wrong(term: _Term, kind: str, threshold: float, k: int) -> tf.Tensor:
    """1.0 where the prediction is wrong (top-k for categorical outputs)."""
    y_p = tf.cast(term.y_pred, tf.float32)
    if kind == "binary":
        y_t, y_p = _align(tf.cast(term.y_true, tf.float32), y_p)
        return tf.cast(tf.not_equal(tf.cast(y_p > threshold, tf.float32), y_t), tf.float32)
    if k == 1 and kind == "sparse" and y_p.shape.rank == 2 and term.y_true.shape.rank == 1:  # fewest ops
        predicted = tf.argmax(y_p, axis=-1, output_type=tf.int32)
        return tf.cast(tf.not_equal(predicted, tf.cast(term.y_true, tf.int32)), tf.float32)
    if kind == "onehot":
        labels = tf.argmax(term.y_true, axis=-1, output_type=tf.int32)
    else:
        labels = tf.cast(tf.reshape(term.y_true, tf.shape(y_p)[:-1]), tf.int32)
    scores = tf.reshape(y_p, [-1, y_p.shape[-1]])
    flat = tf.reshape(labels, [-1])
    if k == 1:
        wrong = tf.not_equal(tf.argmax(scores, axis=-1, output_type=tf.int32), flat)
    else:
        wrong = tf.logical_not(tf.math.in_top_k(flat, scores, k))
    return tf.reshape(tf.cast(wrong, tf.float32), tf.shape(labels))


def _classification(term: _Term, prefix: str) -> dict[str, tf.Tensor]:
    found = _classifier_kind(term)
    if found is None:
        return {}
    kind, threshold = found
    out = {}
    for k in (1, 5):
        if k == 5 and (kind == "binary" or term.y_pred.shape[-1] < 5):
            continue
        wrong = _wrong(term, kind, threshold, k)
        mask = _keras_mask(term.y_pred)
        name = f"{prefix}wrong-top{k}"
        if mask is None and term.sample_weight is None and wrong.shape.rank == 1:
            out[name] = out[exact_keys(name)[0]] = wrong  # the fewest ops for the common case
            out[exact_keys(name)[1]] = tf.ones_like(wrong)
            continue
        valid = tf.ones_like(wrong) if mask is None else _broadcast_weight(mask, wrong)
        weight = _broadcast_weight(term.sample_weight, wrong) * valid
        out[name] = tf.math.divide_no_nan(_rows(wrong * valid), _rows(valid))
        out[exact_keys(name)[0]], out[exact_keys(name)[1]] = _rows(wrong * weight), _rows(weight)
    if kind == "binary":
        out[f"{prefix}pred"] = tf.cast(tf.squeeze(term.y_pred, -1) > threshold, tf.int32)
    return out


def _unpack_keras_batch(batch: tuple) -> tuple[Any, Any, Any]:
    if len(batch) in (1, 2, 3):
        return tuple(batch) + (None,) * (3 - len(batch))
    raise ValueError(
        "A Keras validation batch must be `x`, `(x, y)` or `(x, y, sample_weight)`. Received a "
        f"tuple of {len(batch)} elements; pass `tower_func` to handle other layouts.")


def _check_batched(model: keras.Model, x: Any) -> None:
    """Refuse a validation set of single examples (a dataset without ``.batch()``)."""
    try:
        expected = [len(t.shape) for t in model.inputs]
    except (AttributeError, ValueError, TypeError):
        return
    got = [t.shape.rank for t in tf.nest.flatten(x)]
    if len(expected) == len(got) and all(g is not None and g == e - 1 for e, g in zip(expected, got)):
        raise ValueError(
            f"The validation input's `x` has shape {[t.shape for t in tf.nest.flatten(x)]}, one "
            f"dimension less than the model's input {[tuple(t.shape) for t in model.inputs]}: it "
            "looks unbatched. Batch it, e.g. `dataset.batch(64)`.")


def _named_outputs(model: keras.Model, y_pred: Any) -> tuple[list[str], list[tf.Tensor]]:
    if isinstance(y_pred, dict):
        names = sorted(y_pred)  # Keras flattens dicts in key order
        return [str(n) for n in names], [y_pred[n] for n in names]
    flat = tf.nest.flatten(y_pred)
    given = list(getattr(model, "output_names", None) or [])  # Sequential has none
    fallback = ["output"] if len(flat) == 1 else [f"output_{i}" for i in range(len(flat))]
    return [given[i] if i < len(given) else fallback[i] for i in range(len(flat))], flat


def keras_tower_func(model: keras.Model) -> Callable[..., dict]:
    """The default tower of a Keras model (or ``model.inference_tower()`` if it has one).

    Names it returns, for a batch ``x``, ``(x, y)`` or ``(x, y, sample_weight)``:

    - each output under its output name (the dict key for dict outputs),
      plus ``output`` for a single-output model;
    - ``loss``: per example, the value ``evaluate`` reports for a batch of
      that example alone (masked mean over its valid elements, times its
      sample weight, ``loss_weights``-weighted sum over outputs, plus
      ``model.losses``); ``loss#num`` / ``loss#den`` ``[B, K]``, one column
      per output term (plus one for ``model.losses``), give the exact value;
    - with several loss terms, ``<output>_loss`` (unweighted, as
      ``evaluate``) with its ``#num`` / ``#den``;
    - for classifier outputs ``wrong-top1`` (and ``wrong-top5`` with >= 5
      classes), per example the wrong fraction of valid elements, with
      ``#num`` / ``#den`` weighted as Keras's accuracy metrics; named
      ``<output>/wrong-top1`` when the model has several outputs. Binary
      cross-entropy outputs get ``wrong-top1`` and ``pred`` (0/1);
    - ``#sample_weight`` ``[B]`` when the batch has per-example weights.
    """
    if callable(getattr(model, "inference_tower", None)):
        return model.inference_tower()

    # Read once, here, in the caller's thread and outside any trace: the
    # compile config serializes the optimizer, which under a multi-worker
    # strategy reads variables with collectives; every worker must run those
    # at the same point.
    loss_weights = _loss_weights(model) if getattr(model, "loss", None) is not None else None

    def tower(*batch):
        x, y, sw = _unpack_keras_batch(batch)
        sw = None if sw is None else tf.nest.map_structure(tf.convert_to_tensor, sw)
        _check_batched(model, x)
        y_pred = model(x, training=False)
        names, preds = _named_outputs(model, y_pred)
        out: dict[str, tf.Tensor] = dict(zip(names, preds))
        if len(preds) == 1:
            out["output"] = preds[0]
        if sw is not None and not tf.nest.is_nested(sw) and (
                sw.shape.rank == 1 or (sw.shape.rank == 2 and sw.shape[-1] == 1)):
            out[SAMPLE_WEIGHT_KEY] = tf.reshape(tf.cast(sw, tf.float32), [-1])
        if y is None:
            return out
        terms = _terms(model, names, preds, y, sw, loss_weights)
        for term in terms:
            out.update(_classification(term, "" if len(preds) == 1 else term.name + "/"))
        out.update(_loss_outputs(model, [t for t in terms if t.loss is not None], tf.shape(preds[0])[0]))
        return out

    return tower


def _loss_weights(model: keras.Model) -> Any:
    """``compile(loss_weights=...)``, read through the public compile config
    (eagerly: it serializes the optimizer)."""
    try:
        with tf.init_scope(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "serializing a lambda"
            return (model.get_compile_config() or {}).get("loss_weights")
    except Exception:  # a compile config that does not serialize: Keras's own copy
        return getattr(getattr(model, "_compile_loss", None), "_user_loss_weights", None)


def _loss_outputs(model: keras.Model, terms: list[_Term], batch_size: tf.Tensor) -> dict:
    if not terms:
        return {}
    out, nums, dens, plain = {}, [], [], True
    for term in terms:
        num, den, one = _loss_sums(term)
        plain = plain and one
        if len(terms) > 1:
            name = f"{term.name}_loss"
            out[name] = tf.math.divide_no_nan(num, den)
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
