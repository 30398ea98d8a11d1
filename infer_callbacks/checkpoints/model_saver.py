"""``ModelSaver``: the latest N checkpoints, resumable; the directory layout
that ``SidecarEvaluator`` reads. See :mod:`infer_callbacks.checkpoints.savers` for the
files and the rules for readers."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Sequence

import keras
import tensorflow as tf

from infer_callbacks.checkpoints import any_format, keras_format, layout as ckpt, run_dir
from infer_callbacks._util.chief import ChiefOnly
from infer_callbacks._util.copying import copy_callback
from infer_callbacks._util import atomic_write_json, global_step, prepare_dir
from infer_callbacks.distribute.devices import is_chief, model_strategy

__all__ = ["ModelSaver", "prepare_checkpoint_dir", "chief_of"]


def prepare_checkpoint_dir(path: Any, who: str) -> str:
    """``path`` made ready as ``who``'s checkpoint directory (an error names a bad one)."""
    return prepare_dir(path, who, "checkpoint directory")


def chief_of(model) -> bool:
    """Whether this process writes ``model``'s checkpoints (the chief)."""
    return is_chief(model_strategy(model))


class ModelSaver(ChiefOnly, keras.callbacks.Callback):  # files: the chief's, whatever chief_only
    """Saves the model, its optimizer, the epoch and the global step after
    every ``every_k_epochs`` epochs (or whenever a ``PeriodicTrigger`` around
    it fires), keeping the latest ``max_to_keep`` as ``ckpt-<global_step>``;
    writes ``training_finished`` when training ends.

    A run that does not resume the directory (its model starts at global
    step 0, or before the directory's latest step) first moves the earlier
    run's checkpoints into ``<checkpoint_dir>/run-<N>/``, with a warning; a
    resume continues in place (see :mod:`infer_callbacks.checkpoints.run_dir`).

    On Keras's TensorFlow backend checkpoints are TensorFlow checkpoints
    (:mod:`~infer_callbacks.checkpoints.layout`); on any other backend (JAX, PyTorch)
    they are Keras files, ``ckpt-<global_step>.weights.h5`` listed in
    ``checkpoints.json`` (:mod:`~infer_callbacks.checkpoints.keras_format`),
    with the same rules.

    Args:
        checkpoint_dir: where the checkpoints go.
        max_to_keep: how many recent checkpoints to keep.
        keep_checkpoint_every_n_hours: also keep one checkpoint every n hours.
        every_k_epochs: save after every k-th epoch.
        var_collections: tensorpack's argument; only ``None`` (TF1 collections
            do not exist: every variable of the model is saved).
        checkpoint_format: ``"auto"`` (TensorFlow checkpoints on the
            TensorFlow backend, Keras files on any other), ``"tensorflow"``
            or ``"keras"``.

    Example:

    ```python
    TrainConfig(model=Model(), data=train_ds, max_epoch=10,
                callbacks=[ModelSaver("train_log", max_to_keep=3)])
    PeriodicTrigger(ModelSaver("train_log"), every_k_steps=500)  # by steps instead
    ```
    """

    def __init__(self, checkpoint_dir: str | os.PathLike | None = None, max_to_keep: int = 5,
                 keep_checkpoint_every_n_hours: float | None = None, *, every_k_epochs: int = 1,
                 var_collections: Any = None, checkpoint_format: str = "auto"):
        super().__init__()
        self._format = keras_format.resolve_format(checkpoint_format, "ModelSaver")
        self.checkpoint_format = checkpoint_format
        if isinstance(checkpoint_dir, int) and not isinstance(checkpoint_dir, bool):
            raise TypeError(
                "ModelSaver's first argument is the checkpoint directory. For tensorpack's "
                f"ModelSaver({checkpoint_dir}) write ModelSaver(checkpoint_dir=..., "
                f"max_to_keep={checkpoint_dir}).")
        if var_collections is not None:
            raise ValueError("`var_collections` has no meaning here (no TF1 collections): every "
                             "variable of the model is saved. Received: "
                             f"var_collections={var_collections!r}")
        for name, value in (("max_to_keep", max_to_keep), ("every_k_epochs", every_k_epochs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        self.checkpoint_dir = prepare_checkpoint_dir(checkpoint_dir, "ModelSaver")
        self.max_to_keep = max_to_keep
        self.keep_checkpoint_every_n_hours = keep_checkpoint_every_n_hours or None
        self.every_k_epochs = every_k_epochs
        self.saved: list[str] = []
        self._directory: str | None = None
        self._epoch = 0
        self._last_step: int | None = None

    def __deepcopy__(self, memo: dict) -> "ModelSaver":
        """The same settings and no run state (keras-tuner copies callbacks for
        every trial)."""
        return copy_callback(self, memo, fresh={
            "saved": list, "_directory": lambda: None, "_epoch": int, "_last_step": lambda: None})

    @staticmethod
    def restore(model: keras.Model, checkpoint_dir: str | os.PathLike) -> int:
        """Restore the latest checkpoint of ``checkpoint_dir`` (or the
        checkpoint it names), weights and optimizer, into a built, compiled
        ``model``, whichever format it was written in; returns the epochs
        done (for ``fit(initial_epoch=)``)."""
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)
        info = any_format.restore(model, checkpoint_dir, optimizer=optimizer)
        return info.epoch or 0

    def on_train_begin(self, logs=None) -> None:
        self._last_step = None  # a second fit() with the same saver saves again
        self._epoch = 0
        self._chief = chief_of(self.model)
        self._directory = self.checkpoint_dir if self._chief else tempfile.mkdtemp(prefix="modelsaver-")
        if self._chief:  # a new run moves an earlier run's files aside (run_dir.py)
            run_dir.start_run(self.checkpoint_dir, global_step(self.model), "ModelSaver")
        marker = os.path.join(self.checkpoint_dir, ckpt.FINISHED_MARKER)
        if self._chief and os.path.exists(marker):
            os.unlink(marker)  # this directory is being trained into again

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._epoch = epoch
        if (epoch + 1) % self.every_k_epochs == 0:
            self._save(epoch)

    def trigger(self, logs=None) -> None:
        """Save now (what a ``PeriodicTrigger`` calls at its schedule)."""
        self._save(self._epoch)

    def on_train_end(self, logs=None) -> None:
        if self._directory is None:
            return
        if self._chief:
            atomic_write_json(os.path.join(self.checkpoint_dir, ckpt.FINISHED_MARKER), {
                "epoch": self._epoch + 1, "global_step": global_step(self.model),
                "checkpoint": os.path.basename(self.saved[-1]) if self.saved else None})
        else:
            shutil.rmtree(self._directory, ignore_errors=True)
        self._directory = None

    def _save(self, epoch: int, weights: Sequence[Any] | None = None) -> str | None:
        """Write ``ckpt-<global_step>`` of epoch ``epoch`` (0-based). With
        ``weights`` (aligned with ``model.weights``), those values are saved
        instead of the model's (the optimizer state is still the current one)."""
        if self._directory is None:
            return None
        step = global_step(self.model)
        if self._last_step == step and weights is None:
            return None
        if self._format == "keras":
            path = keras_format.save_managed(
                self.model, self._directory, epoch=epoch + 1, global_step=step, weights=weights,
                max_to_keep=self.max_to_keep, keep_checkpoint_every_n_hours=self.keep_checkpoint_every_n_hours)
        else:
            path = self._save_tensorflow(epoch, step, weights)
        self._last_step = step
        if self._chief:
            self.saved.append(path)
        return path

    def _save_tensorflow(self, epoch: int, step: int, weights: Sequence[Any] | None) -> str:
        optimizer = getattr(self.model, "optimizer", None)
        checkpoint = ckpt.make_checkpoint(self.model, weights=weights, optimizer=optimizer,
                                          epoch=epoch + 1, global_step=step)
        manager = tf.train.CheckpointManager(
            checkpoint, self._directory, max_to_keep=self.max_to_keep,
            keep_checkpoint_every_n_hours=self.keep_checkpoint_every_n_hours, checkpoint_name="ckpt")
        return manager.save(checkpoint_number=step)
