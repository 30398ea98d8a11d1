"""The ``Inferencer`` plugin protocol (tensorpack's, on numpy).

Inferencers see numpy arrays only; the runner owns the backend. What an
inferencer reports is made ``{str: float}`` by
:mod:`infer_callbacks.inferencers.results`; the names it fetches are checked
by :mod:`infer_callbacks.inferencers.fetches`. The built-ins live in
:mod:`infer_callbacks.inferencers.scalar`, :mod:`infer_callbacks.inferencers.keras_metric`,
:mod:`infer_callbacks.inferencers.gather` and :mod:`infer_callbacks.inferencers.confusion`.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any, Sequence

import numpy as np

from infer_callbacks._util.copying import copy_callback
from infer_callbacks.inferencers.context import RunContext, TrainerHandle
from infer_callbacks.inferencers.fetches import check_fetches, tensor_names
from infer_callbacks.inferencers.results import element_keys, scalar_results

__all__ = ["Inferencer", "element_keys", "tensor_names"]

_warned_renames: set = set()


def _overrides(obj: Any, name: str) -> bool:
    return getattr(type(obj), name, None) is not getattr(Inferencer, name, None)


def _warn_renamed(obj: Any, old: str, new: str) -> None:
    key = (type(obj), old)
    if key not in _warned_renames:
        _warned_renames.add(key)
        warnings.warn(
            f"{type(obj).__name__}.{old}() is tensorpack's old name of {new}(); it still works, "
            f"but rename it to {new}().", UserWarning, stacklevel=4)


class Inferencer:
    """Turns per-batch tensors into epoch-level numbers.

    Subclasses override the underscore hooks, the template methods of every
    inferencer (built-ins included). For each validation run the runner does::

        inf._before_inference()                     # reset state
        for batch in validation_set:                # in dataset order
            inf._on_fetches(results)                # numpy arrays, _get_fetches() order
        logs.update(inf._after_inference() or {})   # {name: scalar}

    ``_get_fetches()`` returns the tensor names, as strings, to fetch; it is
    asked once, before training. Through the public methods the runner also
    passes each batch's sample count, its exact ``(num, den)`` pairs and its
    sample weights (read them in a hook with :meth:`batch_extras`), and the
    run's context: :attr:`model`, :attr:`epoch_num` (1-based),
    :attr:`global_step`, :attr:`is_chief` and :attr:`trainer`
    (``self.trainer.monitors.put_scalar(name, value)`` as in tensorpack).
    ``_setup_graph()`` runs once per model (no TensorFlow graph to build: use
    it for per-model setup), ``_before_train()`` / ``_after_train()`` around
    training.

    Values returned by ``_after_inference`` that are not one number never stop
    training: an array becomes one key per element (``name_0``, ``name_1``,
    ...) and anything non-numeric is dropped, each with a warning.

    Example, a tensorpack-style custom inferencer:

    >>> class MaxAbsError(Inferencer):
    ...     def _before_inference(self):
    ...         self.worst = 0.0
    ...     def _get_fetches(self):
    ...         return ["output", "label"]
    ...     def _on_fetches(self, results):
    ...         pred, label = results
    ...         if len(pred):
    ...             self.worst = max(self.worst, float(np.abs(pred - label).max()))
    ...     def _after_inference(self):
    ...         return {"validation_max_abs_error": self.worst}
    >>> inf = MaxAbsError()
    >>> inf.before_inference()
    >>> inf.on_fetches([np.array([1.0, 2.0]), np.array([1.5, 0.0])], 2)
    >>> inf.after_inference()
    {'validation_max_abs_error': 2.0}
    """

    # Class-level defaults: tensorpack subclasses often skip super().__init__().
    _chief_only = False
    _run_context: RunContext | None = None
    _setup_for: Any = None
    _batch: tuple = (None, None, None, None)  # results, num_samples, exact, sample_weight

    # -- hooks to override ---------------------------------------------------

    def _setup_graph(self) -> None:
        """Called once per model, before its first validation run."""

    def _before_train(self) -> None:
        """Called when training starts."""

    def _after_train(self) -> None:
        """Called when training ends."""

    def _before_inference(self) -> None:
        """Reset state; called at the start of every validation run."""

    def _get_fetches(self) -> list[str]:
        """Names of the tensors this inferencer needs, in order."""
        raise NotImplementedError(
            f"{type(self).__name__} must override `_get_fetches()` to return the "
            "list of tensor names it needs.")

    def _on_fetches(self, results: list[np.ndarray]) -> None:
        """Consume one batch of fetched values (numpy, in fetch order)."""
        raise NotImplementedError(f"{type(self).__name__} must override `_on_fetches(results)`.")

    def _after_inference(self) -> dict[str, float] | None:
        """Return the run's results as ``{name: scalar}``, or ``None``."""
        return None

    # -- the run context -----------------------------------------------------

    def _context(self, what: str) -> RunContext:
        if self._run_context is None:
            raise RuntimeError(
                f"{type(self).__name__}.{what} is known only while a runner drives the "
                "inferencer (after setup_run(ctx) or set_run_context(ctx)).")
        return self._run_context

    @property
    def model(self) -> Any:
        """The model whose weights are measured."""
        return self._context("model").model

    @property
    def trainer(self) -> TrainerHandle:
        """tensorpack's ``self.trainer``: ``.monitors``, ``.epoch_num``, ..."""
        return self._context("trainer").trainer

    @property
    def epoch_num(self) -> int:
        """The 1-based epoch whose weights are measured (0 before training)."""
        return self._context("epoch_num").epoch_num

    @property
    def global_step(self) -> int:
        """The optimizer's step count at the measured weights."""
        return self._context("global_step").global_step

    @property
    def is_chief(self) -> bool:
        return self._context("is_chief").is_chief

    @property
    def chief_only(self) -> bool:
        """Run only on the chief worker (default ``False``: every worker
        computes the same numbers, so their ``logs`` agree)."""
        return self._chief_only

    @chief_only.setter
    def chief_only(self, value: bool) -> None:
        self._chief_only = bool(value)

    # What binding to a run leaves on an inferencer; a deep copy starts without it.
    _RUN_STATE = {"_run_context": lambda: None, "_setup_for": lambda: None, "_batch": lambda: Inferencer._batch}

    def __deepcopy__(self, memo: dict) -> "Inferencer":
        """A copy of the configuration, bound to no run (keras-tuner copies
        callbacks, and so their inferencers, for every trial)."""
        return copy_callback(self, memo, fresh=self._RUN_STATE)

    def set_chief_only(self, v: bool = True) -> "Inferencer":
        """Set :attr:`chief_only` and return the inferencer (tensorpack's API)."""
        self.chief_only = v
        return self

    def batch_extras(self) -> tuple[int | None, list | None, np.ndarray | None]:
        """The current batch's ``(num_samples, exact, sample_weight)``, as the
        runner passed them to :meth:`on_fetches`."""
        return self._batch[1], self._batch[2], self._batch[3]

    def _exact_pair(self, index: int, value: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """The exact ``(num, den)`` of fetch ``index``, if the runner sent one and
        ``value`` is the array it fetched (a subclass that passes other values
        to ``super()._on_fetches`` gets them averaged as given)."""
        results, _, exact, _ = self._batch
        if exact is None or results is None or index >= len(exact) or exact[index] is None:
            return None
        return exact[index] if value is results[index] else None

    def _sample_weight_for(self, value: np.ndarray) -> np.ndarray | None:
        """The batch's sample weights, if ``value`` has one row per sample."""
        w = self._batch[3]
        if w is None or np.ndim(value) == 0 or np.shape(value)[0] != np.shape(w)[0]:
            return None
        return w

    # -- public API called by the runner -------------------------------------

    def setup_run(self, ctx: RunContext) -> None:
        """Bind to a run; calls ``_setup_graph()`` the first time for ``ctx.model``."""
        self.set_run_context(ctx)
        key = ctx.model
        try:
            ref = weakref.ref(key) if key is not None else None
        except TypeError:
            ref = None
        known = self._setup_for
        same = known is not None and ((known() is key) if isinstance(known, weakref.ref) else known == id(key))
        if not same:
            self._setup_graph()
            self._setup_for = ref if ref is not None else id(key)

    def set_run_context(self, ctx: RunContext) -> None:
        if not isinstance(ctx, RunContext):
            raise TypeError(f"set_run_context needs an infer_callbacks.inferencers.context.RunContext. "
                            f"Received: {ctx!r:.200}")
        self._run_context = ctx

    def before_train(self) -> None:
        self._before_train()

    def after_train(self) -> None:
        self._after_train()

    def before_inference(self) -> None:
        self._batch = Inferencer._batch
        self._before_inference()

    def get_fetches(self) -> list[str]:
        """``_get_fetches()``, checked: a non-empty list of tensor names."""
        if not _overrides(self, "_get_fetches") and _overrides(self, "_get_output_tensors"):
            _warn_renamed(self, "_get_output_tensors", "_get_fetches")
            fetches = self._get_output_tensors()
        else:
            fetches = self._get_fetches()
        return check_fetches(fetches, f"{type(self).__name__}._get_fetches()")

    def on_fetches(self, results: list[np.ndarray], num_samples: int | None = None, *,
                   exact: Sequence | None = None, sample_weight: np.ndarray | None = None) -> None:
        """One batch: ``results`` in fetch order; ``num_samples`` its sample count
        (``None`` if unknown); ``exact`` a list aligned with the fetches of
        ``None`` or ``(num, den)`` arrays; ``sample_weight`` a ``[B]`` array or
        ``None``. Stores the extras (see :meth:`batch_extras`) and calls
        ``_on_fetches(results)``."""
        if num_samples is not None and (isinstance(num_samples, bool) or int(num_samples) < 0):
            num_samples = None
        results = list(results)
        self._batch = (results, None if num_samples is None else int(num_samples),
                       None if exact is None else list(exact),
                       None if sample_weight is None else np.asarray(sample_weight))
        if not _overrides(self, "_on_fetches") and _overrides(self, "_datapoint"):
            _warn_renamed(self, "_datapoint", "_on_fetches")
            self._datapoint(results)
        else:
            self._on_fetches(results)

    def after_inference(self) -> dict[str, float]:
        """``_after_inference()`` as ``{str: float}``; never raises over a value."""
        self._batch = Inferencer._batch
        return scalar_results(self._after_inference(), f"{self!r}._after_inference()")

    def after_inference_images(self) -> dict[str, np.ndarray]:
        """Images of this run, ``{name: HxWxC uint8 array}``. Default: none."""
        return {}

    def monitor_only_results(self) -> dict[str, float]:
        """Scalars for the monitors but not ``logs`` (e.g. per-class values). Default: none."""
        return {}

    def accepts_blocks(self) -> bool:
        """Whether the runner may hand this inferencer all the batches of one
        step call at once (concatenated along the batch axis) instead of one
        batch at a time. Only the built-ins whose state is plain sums say
        yes, and only as their own class: a subclass gets every batch, as
        tensorpack code expects."""
        return False

    def result_names(self) -> list[str] | None:
        """The keys ``after_inference`` will return, when known in advance
        (used to detect clashes before training). ``None`` if unknown."""
        return None

    def __repr__(self) -> str:
        try:
            names = ", ".join(repr(n) for n in self._get_fetches())
        except Exception:  # noqa: BLE001 - only for repr
            names = ""
        return f"{type(self).__name__}({names})"


# The old private name, for code written before ``tensor_names`` was public.
_names = tensor_names
