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
validation set taken as one batch, except where Keras's own value depends on
the batching (an unmasked loss over padded positions, a loss returning one
scalar per batch): there it equals ``evaluate`` on the same batches (see
:mod:`~infer_callbacks.towers.keras_loss`).

The tower is written on ``keras.ops`` and ``keras.tree``: the same function
runs on the TensorFlow backend (eagerly or in ``tf.function``) and on JAX
(eagerly or in ``jax.jit``, the model's variables substituted through a
``keras.StatelessScope(..., collect_losses=True)``). It uses static ranks
only and no Python control flow on tensor values.

Example:

>>> import keras
>>> inputs = keras.Input((3,))
>>> model = keras.Model(inputs, keras.layers.Dense(4, name="logits")(inputs))
>>> model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
>>> out = keras_tower_func(model)(keras.ops.zeros((2, 3)), keras.ops.array([1, 2]))
>>> sorted(k for k in out if "#" not in k)
['logits', 'loss', 'output', 'wrong-top1']
>>> tuple(out["loss#num"].shape), tuple(out["wrong-top1#den"].shape)
((2, 1), (2,))
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import keras
from keras import ops

from infer_callbacks.towers.keras_loss import Term, loss_name, loss_outputs, loss_weights, terms
from infer_callbacks.towers.keras_shapes import align, broadcast_weight, keras_mask, rank, row_means, row_sums
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


def _classifier_kind(term: Term) -> tuple[str, float] | None:
    """``("sparse" | "onehot" | "binary", threshold)`` for a classifier output."""
    y_t, y_p = term.y_true, term.y_pred
    r_t, r_p = rank(y_t), rank(y_p)
    if not keras.backend.is_float_dtype(y_p.dtype) or r_p is None or r_p < 1 or r_t is None:
        return None
    classes, name = y_p.shape[-1], loss_name(term.loss)
    if classes == 1:
        if term.loss is None or name not in _BINARY:
            return None
        logits = getattr(term.loss, "get_config", dict)().get("from_logits", False)
        return "binary", 0.0 if logits else 0.5
    if classes is None or classes < 2:
        return None
    if r_t == r_p - 1 or (r_t == r_p and y_t.shape[-1] == 1):
        return "sparse", 0.0
    if r_t == r_p and y_t.shape[-1] == classes and name not in _NOT_CLASSIFICATION:
        return "onehot", 0.0
    return None


def _wrong(term: Term, kind: str, threshold: float, k: int) -> Any:
    """1.0 where the prediction is wrong (top-k for categorical outputs)."""
    y_p = ops.cast(term.y_pred, "float32")
    if kind == "binary":
        y_t, y_p = align(ops.cast(term.y_true, "float32"), y_p)
        return ops.cast(ops.not_equal(ops.cast(ops.greater(y_p, threshold), "float32"), y_t), "float32")
    if kind == "onehot":
        labels = ops.argmax(term.y_true, axis=-1)
    elif rank(term.y_true) == rank(y_p):  # sparse labels with a last axis of 1
        labels = ops.squeeze(term.y_true, -1)
    else:
        labels = term.y_true
    labels = ops.cast(labels, "int32")
    if k == 1:
        wrong = ops.not_equal(ops.cast(ops.argmax(y_p, axis=-1), "int32"), labels)
        return ops.cast(wrong, "float32")
    scores = ops.reshape(y_p, (-1, y_p.shape[-1]))  # in_top_k takes [N, classes]
    wrong = ops.logical_not(ops.in_top_k(ops.reshape(labels, (-1,)), scores, k))
    return ops.reshape(ops.cast(wrong, "float32"), ops.shape(labels))


def _classification(term: Term, prefix: str, wanted: Callable[[str], bool]) -> dict[str, Any]:
    found = _classifier_kind(term)
    if found is None:
        return {}
    kind, threshold = found
    out = {}
    for k in (1, 5):
        if (k == 5 and (kind == "binary" or term.y_pred.shape[-1] < 5)) or not wanted(f"{prefix}wrong-top{k}"):
            continue
        wrong = _wrong(term, kind, threshold, k)
        mask = keras_mask(term.y_pred)
        name = f"{prefix}wrong-top{k}"
        if mask is None and term.sample_weight is None and rank(wrong) == 1:
            out[name] = out[exact_keys(name)[0]] = wrong  # the fewest ops for the common case
            out[exact_keys(name)[1]] = ops.ones_like(wrong)
            continue
        if mask is None:  # as Keras's Mean: each example's mean over its positions
            weight = broadcast_weight(term.sample_weight, wrong)
            out[name] = row_means(wrong)
            out[exact_keys(name)[0]], out[exact_keys(name)[1]] = row_means(wrong * weight), row_means(weight)
            continue
        valid = broadcast_weight(mask, wrong)
        weight = broadcast_weight(term.sample_weight, wrong) * valid
        out[name] = ops.divide_no_nan(row_sums(wrong * valid), row_sums(valid))
        out[exact_keys(name)[0]], out[exact_keys(name)[1]] = row_sums(wrong * weight), row_sums(weight)
    if kind == "binary" and wanted(f"{prefix}pred"):
        out[f"{prefix}pred"] = ops.cast(ops.greater(ops.squeeze(term.y_pred, -1), threshold), "int32")
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
    got = [rank(t) for t in keras.tree.flatten(x)]
    if len(expected) == len(got) and all(g is not None and g == e - 1 for e, g in zip(expected, got)):
        raise ValueError(
            f"The validation input's `x` has shape {[tuple(t.shape) for t in keras.tree.flatten(x)]}, one "
            f"dimension less than the model's input {[tuple(t.shape) for t in model.inputs]}: it "
            "looks unbatched. Batch it, e.g. `dataset.batch(64)`.")


def _collecting_losses(model: keras.Model) -> Any:
    """A scope in which ``model.losses`` holds this call's ``add_loss`` terms.

    Under a ``keras.StatelessScope(collect_losses=False)`` (the default, e.g.
    a snapshot of the weights) Keras drops activity regularizers and
    ``add_loss`` terms, which ``evaluate`` counts; there the tower opens a
    scope that collects them, with the same variable values."""
    try:  # Keras 3.15 has no public getter of the current scope
        from keras.src.backend import get_stateless_scope
    except ImportError:  # pragma: no cover - another Keras layout
        return contextlib.nullcontext()
    outer = get_stateless_scope()
    if outer is None or outer.collect_losses:
        return contextlib.nullcontext()
    values = [(v, outer.get_current_value(v)) for v in model.variables]
    return keras.StatelessScope(state_mapping=[(v, t) for v, t in values if t is not None],
                                collect_losses=True)


def _named_outputs(model: keras.Model, y_pred: Any) -> tuple[list[str], list[Any]]:
    if isinstance(y_pred, dict):
        names = sorted(y_pred)  # Keras flattens dicts in key order
        return [str(n) for n in names], [y_pred[n] for n in names]
    flat = keras.tree.flatten(y_pred)
    given = list(getattr(model, "output_names", None) or [])  # Sequential has none
    fallback = ["output"] if len(flat) == 1 else [f"output_{i}" for i in range(len(flat))]
    return [given[i] if i < len(given) else fallback[i] for i in range(len(flat))], flat


def keras_tower_func(model: keras.Model, names: Sequence[str] | None = None) -> Callable[..., dict]:
    """The default tower of a Keras model (or ``model.inference_tower()`` if it has one).

    With ``names`` (fetch names), the tower computes only the losses and
    classification outputs among them (with their exact pairs), for an
    engine that runs it eagerly (PyTorch): a compiled step drops what is
    not fetched by itself. The model's outputs, labels and sample weights
    are always returned (they cost nothing).

    Names it returns, for a batch ``x``, ``(x, y)`` or ``(x, y, sample_weight)``:

    - each output under its output name (the dict key for dict outputs),
      plus ``output`` for a single-output model;
    - ``label/<output>``: each output's labels, for a model with several
      outputs (labels given as a dict by output name or a list by position);
    - ``loss``: per example, the value ``evaluate`` reports for a batch of
      that example alone (masked mean over its valid elements, or the mean
      over its positions without a mask, times its sample weight,
      ``loss_weights``-weighted sum over outputs, plus ``model.losses``); a
      loss that returns one scalar per batch gives that value to each example
      of the batch. ``loss#num`` / ``loss#den`` ``[B, K]``, one column per
      output term (plus one for ``model.losses``), give the epoch value (see
      :mod:`~infer_callbacks.towers.keras_loss`);
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
    weights_of_losses = loss_weights(model) if getattr(model, "loss", None) is not None else None
    asked = None if names is None else {n[:-2] if n.endswith(":0") else n for n in names}

    def wanted(name: str) -> bool:
        return asked is None or name in asked

    any_loss = asked is None or any(n == "loss" or n.endswith("_loss") for n in asked)

    def tower(*batch):
        with _collecting_losses(model):
            return _tower(*batch)

    def _tower(*batch):
        x, y, sw = _unpack_keras_batch(batch)
        sw = None if sw is None else keras.tree.map_structure(ops.convert_to_tensor, sw)
        _check_batched(model, x)
        y_pred = model(x, training=False)
        names, preds = _named_outputs(model, y_pred)
        out: dict[str, Any] = dict(zip(names, preds))
        if len(preds) == 1:
            out["output"] = preds[0]
        if sw is not None and not keras.tree.is_nested(sw) and (
                rank(sw) == 1 or (rank(sw) == 2 and sw.shape[-1] == 1)):
            out[SAMPLE_WEIGHT_KEY] = ops.reshape(ops.cast(sw, "float32"), (-1,))
        if y is None:
            return out
        found = terms(model, names, preds, y, sw, weights_of_losses)
        for term in found:
            if len(preds) > 1:
                out[f"label/{term.name}"] = term.y_true
            out.update(_classification(term, "" if len(preds) == 1 else term.name + "/", wanted))
        if any_loss:
            out.update(loss_outputs(model, [t for t in found if t.loss is not None], ops.shape(preds[0])[0]))
        return out

    return tower
