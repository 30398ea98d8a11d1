"""What an inferencer knows about the run it measures.

The runner builds a :class:`RunContext` for every validation run and hands it
to each inferencer (``inf.set_run_context(ctx)``). ``ctx.trainer`` is a
:class:`TrainerHandle`, the part of tensorpack's trainer that inferencer code
calls: ``self.trainer.monitors.put_scalar(...)``, ``.put_image(...)``,
``.get_latest(...)``, ``self.trainer.epoch_num``.

=====================  ====================================================
who                    owns
=====================  ====================================================
runner                 building the context and the handle, draining the
                       handle's monitors after ``after_inference``,
                       recording each run's results into its history
inferencer             reading the context; putting scalars and images
:class:`MonitorsHandle` what was put, until drained; the scalar history
=====================  ====================================================

Example, what a runner does around one validation run:

>>> ctx = RunContext(model=None, epoch_num=3, global_step=300)
>>> ctx.trainer.monitors.put_scalar("val_extra", 1.5)
>>> ctx.trainer.monitors.get_latest("val_extra")
1.5
>>> ctx.trainer.monitors.drain()
({'val_extra': 1.5}, {})
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

import numpy as np

from infer_callbacks._util import as_scalar, numeric_array

__all__ = ["RunContext", "TrainerHandle", "MonitorsHandle"]


def _as_image(name: str, value: Any) -> dict[str, np.ndarray]:
    """tensorpack's image forms (HW, HWC, NHWC; values in [0, 255]) as
    ``{name: H x W x C uint8}``; N images become ``name/0`` ... ``name/N-1``."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf" or array.ndim not in (2, 3, 4) \
            or (array.ndim >= 3 and array.shape[-1] not in (1, 3, 4)):
        raise ValueError(
            f"put_image({name!r}, ...) needs an HxW, HxWxC or NxHxWxC array of numbers in "
            f"[0, 255] with C in (1, 3, 4). Received: dtype {array.dtype}, shape {array.shape}.")
    if array.ndim == 2:
        array = array[..., None]
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    if array.ndim == 3:
        return {name: array}
    if len(array) == 1:
        return {name: array[0]}
    return {f"{name}/{i}": image for i, image in enumerate(array)}


class MonitorsHandle:
    """tensorpack's ``trainer.monitors`` for inferencers: scalars and images
    put during a run, and the history of every scalar seen.

    Values put are held until the runner :meth:`drain`\\ s them (after
    ``after_inference``) and reports them with the run's results. The
    history holds one ``(global_step, value)`` pair per scalar and run, of
    everything put or :meth:`record`\\ ed, so
    ``get_latest('validation_error')`` returns the last run's error, as in
    tensorpack. A value put, drained into the results and recorded back with
    them stays one entry: the recorded value replaces the one put at that
    step.

    Args:
        global_step: the step recorded with values put (the runner keeps it
            current through :class:`TrainerHandle`).
    """

    def __init__(self, global_step: int = 0):
        self.global_step = int(global_step)
        self._scalars: dict[str, float] = {}
        self._images: dict[str, np.ndarray] = {}
        self._history: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self._drained: set[str] = set()  # put, drained, not yet recorded back

    def put_scalar(self, name: str, value: Any) -> None:
        """Report a scalar with this run's results (and add it to the history)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"put_scalar needs a non-empty string name. Received: name={name!r}")
        scalar = as_scalar(value)
        if scalar is None:
            array = numeric_array(value)
            what = f"shape {array.shape} and dtype {array.dtype}" if array is not None else "no numbers"
            raise ValueError(
                f"put_scalar({name!r}, ...) needs one number. Received: {type(value).__name__} "
                f"with {what}; reduce it or put one scalar per element.")
        self._scalars[name] = scalar
        self._history[name].append((self.global_step, scalar))

    def put_image(self, name: str, image: Any) -> None:
        """Report an image (HxW, HxWxC or NxHxWxC, values in [0, 255])."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"put_image needs a non-empty string name. Received: name={name!r}")
        self._images.update(_as_image(name, image))

    def record(self, scalars: dict[str, float], global_step: int | None = None) -> None:
        """Add a run's results to the history (called by the runner).

        A scalar put in this run and drained into ``scalars`` is already in
        the history at this step: its entry takes the recorded value instead
        of gaining a second one.
        """
        step = self.global_step if global_step is None else int(global_step)
        drained, self._drained = self._drained, set()
        for name, value in scalars.items():
            value = as_scalar(value)
            if value is None:
                continue
            history = self._history[name]
            if name in drained and history and history[-1][0] == step:
                history[-1] = (step, value)
            else:
                history.append((step, value))

    def get_latest(self, name: str) -> float:
        """The last value of scalar ``name``; ``KeyError`` if none yet."""
        history = self._history.get(name)
        if not history:
            known = sorted(k for k, v in self._history.items() if v)
            raise KeyError(f"No value of {name!r} yet. Scalars with values: {known}")
        return history[-1][1]

    def get_history(self, name: str) -> list[tuple[int, float]]:
        """Every ``(global_step, value)`` of scalar ``name`` so far (a copy)."""
        return list(self._history.get(name, ()))

    def drain(self) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """The scalars and images put since the last drain; clears them."""
        scalars, images = self._scalars, self._images
        self._scalars, self._images = {}, {}
        self._drained = set(scalars)
        return scalars, images


@dataclasses.dataclass
class TrainerHandle:
    """The trainer as inferencer code sees it (tensorpack's ``self.trainer``).

    Attributes:
        model: the model being trained (a Keras model, or what the trainer host
            trains), or ``None`` for a standalone tower function.
        epoch_num: the current training epoch, 1-based.
        global_step: the optimizer's step count.
        is_chief: whether this process is the chief worker.
        monitors: put scalars and images, read the history.
    """

    model: Any = None
    epoch_num: int = 0
    global_step: int = 0
    is_chief: bool = True
    monitors: MonitorsHandle = dataclasses.field(default_factory=MonitorsHandle)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "global_step" and "monitors" in self.__dict__:
            self.monitors.global_step = int(value)
        elif name == "monitors" and "global_step" in self.__dict__:
            value.global_step = int(self.global_step)


@dataclasses.dataclass(frozen=True)
class RunContext:
    """One validation run, as the runner tells it to each inferencer.

    Attributes:
        model: the model whose weights are measured.
        epoch_num: the 1-based epoch whose weights are measured (with
            asynchronous validation, training may already be further).
        global_step: the optimizer's step count at those weights.
        is_chief: whether this process is the chief worker.
        trainer: a :class:`TrainerHandle`; built from the fields above when
            not given.
    """

    model: Any = None
    epoch_num: int = 1
    global_step: int = 0
    is_chief: bool = True
    trainer: TrainerHandle | None = None

    def __post_init__(self) -> None:
        if isinstance(self.epoch_num, bool) or not isinstance(self.epoch_num, (int, np.integer)) \
                or self.epoch_num < 0:
            raise ValueError(f"`epoch_num` must be an integer >= 0 (1-based; 0 before the first "
                             f"epoch). Received: epoch_num={self.epoch_num!r}")
        if self.trainer is None:
            object.__setattr__(self, "trainer", TrainerHandle(
                model=self.model, epoch_num=int(self.epoch_num), global_step=int(self.global_step),
                is_chief=bool(self.is_chief)))
