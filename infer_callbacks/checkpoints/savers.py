"""Checkpoints during training: ``ModelSaver`` (the latest N) and
``MinSaver`` / ``MaxSaver`` (the best by a logged statistic).

Checkpoints use the layout of :mod:`infer_callbacks.checkpoints.layout` (weights
named by attribute, the optimizer's state, ``epoch`` and ``global_step``) on
Keras's TensorFlow backend, Keras ``.weights.h5`` files on any other
(:mod:`~infer_callbacks.checkpoints.keras_format`, the same rules), so
training resumes where it stopped (``TrainConfig(session_init=dir)``, or
``model.fit(initial_epoch=ModelSaver.restore(model, dir))``) and
``PredictConfig`` / ``SidecarEvaluator`` read them.

Files a ``ModelSaver`` directory holds, and who reads them:

| file | written | rule for readers |
| --- | --- | --- |
| ``ckpt-<global_step>.index/.data-*`` | at each save | **a checkpoint is complete once listed in the state file** |
| ``checkpoint`` (the state file) | after the checkpoint's files, atomically | :func:`infer_callbacks.checkpoints.layout.list_checkpoints` |
| ``training_finished`` (JSON: ``epoch``, ``global_step``, ``checkpoint``) | in ``on_train_end``, atomically | training is over: nothing more will be listed |
| ``min-<stat>-<epoch>.*`` + ``min-<stat>.json`` | by ``MinSaver`` / ``MaxSaver`` | the JSON names the best checkpoint (``checkpoint``) and, under ``kept``, the ``keep_best`` best, best first (:mod:`~infer_callbacks.checkpoints.best_list`) |
| ``run-<N>/`` | when a new run starts in the directory | an earlier run's files, a directory of this layout (:mod:`~infer_callbacks.checkpoints.run_dir`) |

Under ``MultiWorkerMirroredStrategy`` every worker takes part in each save
(reading distributed variables may need the other workers) but only the
chief writes to the checkpoint directory; the others write to a temporary
directory that is removed at once.

Saving other weights than the model's (the snapshot an asynchronous
validation measured): ``saver._save(epoch, weights=...)`` with a list aligned
with ``model.weights`` (``BestSaver._save(epoch, value, weights=...)``).
"""

from __future__ import annotations

import os

from infer_callbacks.checkpoints.best_saver import BestSaver
from infer_callbacks.checkpoints.model_saver import ModelSaver

__all__ = ["ModelSaver", "MinSaver", "MaxSaver"]


class MinSaver(BestSaver):
    """Keeps the checkpoints with the smallest ``monitor`` (the
    ``keep_best`` best, default 1): ``<filename>-<epoch>`` next to
    ``<filename>.json`` (the best value, epoch, step and checkpoint, and
    ``kept``: every kept one, best first, each with ``value``, ``epoch``,
    ``global_step``, ``checkpoint``; replaced atomically, read back on a
    resume; a new run moves it aside into ``run-<N>/`` and starts with no
    best). A value enters when it is strictly better than the worst kept
    one (ties keep the earlier); the checkpoint it pushes out is removed
    after the JSON is replaced. Default filename
    ``min-<monitor>``. It reads ``monitor`` from the epoch's ``logs``
    whatever its place relative to the runner; works under ``fit`` and
    inside ``PeriodicTrigger``.

    Args:
        monitor: a key of the logs, e.g. ``'validation_error'``
            (tensorpack's ``monitor_stat``, also accepted by that name).
        reverse: keep the largest instead (tensorpack's argument).
        filename: the checkpoint's base name.
        checkpoint_dir: default: the directory of a :class:`ModelSaver`
            among the same callbacks.
        checkpoint_format: as :class:`ModelSaver`'s (``"auto"``: Keras
            ``<filename>-<epoch>.weights.h5`` files on a backend other than TensorFlow).
        keep_best: how many of the best checkpoints to keep (Lightning's
            ``save_top_k``); :attr:`kept` lists them.

    Example:

    ```python
    callbacks=[MinSaver(monitor_stat="validation_error", checkpoint_dir="train_log", keep_best=3),
               InferenceRunner(val_ds, ClassificationError())]
    ```
    """

    mode = "min"

    def __init__(self, monitor: str | None = None, reverse: bool = False, filename: str | None = None,
                 checkpoint_dir: str | os.PathLike | None = None, *, monitor_stat: str | None = None,
                 checkpoint_format: str = "auto", keep_best: int = 1):
        super().__init__(monitor, reverse=reverse, filename=filename, checkpoint_dir=checkpoint_dir,
                         monitor_stat=monitor_stat, checkpoint_format=checkpoint_format, keep_best=keep_best)


class MaxSaver(BestSaver):
    """Keeps the checkpoint with the largest ``monitor`` (``max-<monitor>``);
    otherwise as :class:`MinSaver`.

    Example: ``PeriodicTrigger(MaxSaver(monitor_stat="val_accuracy"), every_k_steps=250)``.
    """

    mode = "max"

    def __init__(self, monitor: str | None = None, filename: str | None = None,
                 checkpoint_dir: str | os.PathLike | None = None, *, monitor_stat: str | None = None,
                 checkpoint_format: str = "auto", keep_best: int = 1):
        super().__init__(monitor, reverse=False, filename=filename, checkpoint_dir=checkpoint_dir,
                         monitor_stat=monitor_stat, checkpoint_format=checkpoint_format, keep_best=keep_best)
