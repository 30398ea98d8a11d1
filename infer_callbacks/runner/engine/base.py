"""What an engine is: the one interface the runner sees, whatever Keras's backend.

An **engine** (:class:`Engine`, one per backend, in ``engine/<backend>/``)
owns everything that depends on the backend:

| job | method | the runner hands it | it returns |
| --- | --- | --- | --- |
| devices a user names | :meth:`Engine.device`, :meth:`Engine.devices` | ``device=`` / ``gpus=`` as given | canonical device names (errors name the bad value and list the valid ones) |
| **placement** | :meth:`Engine.placement` | the model, its device choice, whole batches or not, a cache it owns | an opaque placement (a ``tf.distribute`` strategy, a list of ``jax.Device``, a batch split, ``None``) that only the engine reads |
| when a binding is stale | :meth:`Engine.placement_key` | the model | what the placement depends on beside the runner's settings |
| who writes files | :meth:`Engine.is_chief` | the placement | ``True`` on the process that writes |
| binding a model | :meth:`Engine.bind` | model, placement, :class:`EngineConfig`, key | a :class:`Binding` |

A **binding** (:class:`Binding`) is one model bound to one input structure:
the tower chosen (:func:`choose_tower`: the user's ``tower_func``, a
``ModelDesc``'s, or the default Keras tower on ``keras.ops``), one trace that
checks every fetch name before training, the compiled step, the fetch table
(exact pairs, sample weights), the snapshot for asynchronous runs, and the
pass itself: :meth:`Binding.blocks` yields ``(batches, chunk)`` per call in
dataset order. The host side (``runner/passes.py``, ``runner/dispatch.py``)
is shared by every engine and never asks which backend runs.

What every engine shares lives here and in the host-side modules of
``engine/``: :class:`EngineConfig`, :func:`check_inferencers`,
:func:`choose_tower`, :func:`named_fetch_error`, ``fetch_table.py`` (exact
pairs), ``pipeline.py`` (the pace of calls, the background thread),
``host_blocks.py`` and ``host_chunk.py`` (numpy blocks of batches in, a
call's outputs out, for the engines whose step is fed from the host),
``host_processes.py`` (several processes: each its share of whole batches,
combined on the host).
"""

from __future__ import annotations

import abc
import dataclasses
import weakref
from typing import Any, Iterator, Sequence

from infer_callbacks.inferencers.base import Inferencer
from infer_callbacks.runner.engine.fetch_table import FetchTable
from infer_callbacks.towers.keras_tower import keras_tower_func
from infer_callbacks.towers.spec import UnknownFetchError

__all__ = ["Engine", "Binding", "EngineConfig", "check_inferencers", "choose_tower", "named_fetch_error"]


def check_inferencers(infs: Any) -> list[Inferencer]:
    """``infs`` as a non-empty list of inferencers whose fetch lists and
    result names are valid and do not clash."""
    if isinstance(infs, Inferencer):
        infs = [infs]
    if not isinstance(infs, (list, tuple)) or not infs:
        raise ValueError(f"`infs` must be an Inferencer or a non-empty list of Inferencers. Received: {infs!r}")
    owner: dict[str, Inferencer] = {}
    for inf in infs:
        if not isinstance(inf, Inferencer):
            raise TypeError("Every element of `infs` must be an infer_callbacks.Inferencer (e.g. "
                            f"ScalarStats('loss')). Received: {inf!r} of type {type(inf).__name__}.")
        inf.get_fetches()  # validates the list early
        for key in inf.result_names() or []:
            if key in owner:
                raise ValueError(f"Two inferencers report the same key {key!r}: {owner[key]!r} and "
                                 f"{inf!r}. Give one of them another prefix or summary name.")
            owner[key] = inf
    return list(infs)


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """What the runner hands an engine (its own configuration; the engine
    reads nothing else of the runner).

    Attributes:
        input: an :class:`~infer_callbacks.data.source.InputSource` of the
            structure this binding serves (every input given to
            :meth:`Binding.blocks` has this structure).
        infs: the inferencers, in the runner's order (their fetches).
        tower_func: the user's tower function, or ``None`` for the model's own.
        input_names: names of the positional batch elements, or ``None``.
        whole_batches: each replica takes whole batches (data-parallel).
        asynchronous: validate a snapshot of the weights.
        steps_per_execution: the most batches per call, ``None``: automatic.
        pipeline: run the calls in a background thread (where the engine has one).
        shutdown_timeout: seconds to wait for that thread when a pass stops early.
        collective_timeout: the most seconds a process waits for another
            (validation across JAX processes).
        snapshot: the weights' snapshot an asynchronous runner already holds
            for this model (shared by the bindings of its inputs), or ``None``.
    """

    input: Any
    infs: tuple
    tower_func: Any = None
    input_names: tuple | None = None
    whole_batches: bool = False
    asynchronous: bool = False
    steps_per_execution: int | None = None
    pipeline: bool = True
    shutdown_timeout: float = 2.0
    collective_timeout: float = 60.0
    snapshot: Any = None

    @property
    def fetch_names(self) -> list[str]:
        """Every inferencer's fetch names, once each, in the inferencers' order."""
        return list(dict.fromkeys(n for inf in self.infs for n in inf.get_fetches()))


def choose_tower(model: Any, config: EngineConfig) -> tuple[Any, bool, list[str] | None]:
    """``(tower_func, is_keras_default, input_names)`` for ``model``: the
    user's ``tower_func``; else a ``ModelDesc``'s inference tower; else the
    default Keras tower (``towers/keras_tower.py``, on ``keras.ops``)."""
    if config.tower_func is not None:
        tower_func, default = config.tower_func, False
    elif model is None:
        raise ValueError("InferenceRunner has no model and no `tower_func`. Use it in "
                         "`model.fit(callbacks=[...])`, call `runner.set_model(model)`, "
                         "or pass `tower_func`.")
    elif callable(getattr(model, "inference_tower", None)):  # a ModelDesc's model
        tower_func, default = model.inference_tower(), False
    else:
        tower_func, default = keras_tower_func(model), True
    names = (list(config.input_names) if config.input_names is not None
             else getattr(tower_func, "input_names", None))
    return tower_func, default, names


def named_fetch_error(error: UnknownFetchError, config: EngineConfig) -> UnknownFetchError:
    """``error`` naming the inferencer that asked for the unknown fetch."""
    users = [inf for inf in config.infs if error.name in inf.get_fetches()]
    return UnknownFetchError(error.name, f"{error} Requested by {users[0]!r}." if users else str(error))


def require_model_for_snapshot(model: Any) -> None:
    if model is None:
        raise ValueError("asynchronous=True validates a snapshot of the model's weights; "
                         "bind a model first (runner.set_model(model) or model.fit).")


class Binding(abc.ABC):
    """One model bound to one input structure (the shell every engine shares).

    Subclasses set, in their ``__init__`` after calling this one:
    ``specs``/``ranks`` (each fetch's shape and rank per batch), ``max_rounds``
    (the most rounds a call runs), ``snapshot`` (an asynchronous run's copy
    of the weights, or ``None``), and build their fetch table with
    :meth:`_set_fetches`.

    Attributes:
        strategy: the engine's placement (opaque to the runner).
        config: the runner's :class:`EngineConfig`.
    """

    snapshot: Any = None
    max_rounds: int = 1

    def __init__(self, model: Any, placement: Any, config: EngineConfig, key: Any = None):
        self._model_ref = weakref.ref(model) if model is not None else None
        self._key = key
        self.strategy = placement
        self.config = config
        self._table: FetchTable | None = None

    @property
    def model(self) -> Any:
        """The bound model (``None`` once it is gone, or without one)."""
        return self._model_ref() if self._model_ref is not None else None

    def matches(self, model: Any, key: Any = None) -> bool:
        """Whether this binding serves ``model`` with the runner's ``key``."""
        return self.model is model and self._key == key

    def _set_fetches(self, names: Sequence[str], available: Sequence[str]) -> None:
        self._table = FetchTable(list(names), list(available))

    def fetch_table(self, batch: dict, names: Sequence[str], load=None):
        """``(results, exact, sample_weight)`` for one inferencer's fetches
        (see :class:`~infer_callbacks.runner.engine.fetch_table.FetchTable`)."""
        return self._table(batch, names, load)

    def wanted(self, names: Sequence[str]) -> list[str]:
        """The fetches (with their exact pairs and sample weights) ``names`` need."""
        return self._table.wanted(names)

    @property
    def is_chief(self) -> bool:
        return True

    @property
    @abc.abstractmethod
    def tracing_count(self) -> int:
        """How many step variants were traced or compiled (for tests)."""

    @abc.abstractmethod
    def can_block(self, names: Sequence[str]) -> bool:
        """Whether these fetches can travel as one block per call."""

    def pass_blocks(self, input: Any, plan: Sequence) -> Iterator[tuple[int, Any]]:
        """The blocks of one pass feeding ``plan`` (``[(inferencer, fetch
        names)]``); an engine validating across processes yields ``(count,
        None)`` for batches other processes account for. Default: :meth:`blocks`."""
        return self.blocks(input)

    def end_pass(self, outcome: tuple, samples: int) -> tuple[tuple, int]:
        """A finished pass's ``(results, monitor_only, images)`` and sample
        count as every process must see them (across processes: agreed with
        the others). Default: as they are."""
        return outcome, samples

    def pass_failed(self, error: BaseException) -> None:
        """A pass raised ``error`` here (across processes: tell the others)."""

    @abc.abstractmethod
    def blocks(self, input: Any = None) -> Iterator[tuple[int, Any] | None]:
        """A generator of ``(dataset batches, chunk)``, one per call, in
        dataset order, over ``input`` (default: the configuration's); close
        it to stop early."""


class Engine(abc.ABC):
    """One backend's engine: devices, placement and bindings (see the table
    at the top of this module)."""

    name: str = ""

    @abc.abstractmethod
    def device(self, device: Any) -> str | None:
        """``InferenceRunner(device=...)`` in this backend's terms (a GPU id
        this machine lacks warns and means the default placement)."""

    @abc.abstractmethod
    def devices(self, gpus: Any) -> list[str]:
        """``DataParallelInferenceRunner(gpus=...)`` as device names, in order."""

    @abc.abstractmethod
    def placement(self, model: Any, *, device: str | None, devices: Sequence[str] | None,
                  cache: dict) -> Any:
        """Where ``model`` is validated: ``devices`` (whole batches per
        device) when given, else ``device``, else the model's own
        distribution or the backend's default. ``cache`` is the runner's to
        keep what the engine built for it (a strategy) across calls."""

    @abc.abstractmethod
    def placement_key(self, model: Any) -> Any:
        """What the placement of ``model`` depends on beside the runner's own
        settings (a binding is rebuilt when it changes)."""

    def is_chief(self, placement: Any) -> bool:
        """Whether this process writes files under ``placement``."""
        return True

    @abc.abstractmethod
    def bind(self, model: Any, placement: Any, config: EngineConfig, key: Any = None) -> Binding:
        """A :class:`Binding` of ``model`` under ``placement``."""
