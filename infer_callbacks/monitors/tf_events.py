"""``TFEventWriter``: each value as a TensorBoard scalar at its global step, and images."""

from __future__ import annotations

import os

import numpy as np

from infer_callbacks.monitors.writer import prepare_logdir, as_image, MonitorWriter

__all__ = ["TFEventWriter"]


class TFEventWriter(MonitorWriter):
    """Writes TensorBoard event files (scalars at the global step they were
    measured at: a value is never repeated at a later step). A re-run in the
    same ``logdir`` adds a new event file beside the old ones.

    Args:
        logdir: the directory of the event files (required).
        flush_secs: how often the writer flushes on its own.

    Example:

    ```python
    import tempfile
    from infer_callbacks import TFEventWriter

    writer = TFEventWriter(tempfile.mkdtemp())
    writer.setup(None)
    writer.write(1, 10, {"validation_loss": 0.5})
    writer.close()
    ```
    """

    step_series = True

    def __init__(self, logdir: str | os.PathLike, *, flush_secs: int = 30):
        self.logdir = prepare_logdir(logdir, "TFEventWriter")
        self.flush_secs = flush_secs
        self._writer = None

    def setup(self, model) -> None:
        import tensorflow as tf

        prepare_logdir(self.logdir, "TFEventWriter")
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.logdir, flush_millis=self.flush_secs * 1000)

    def write(self, epoch_num: int, step: int, scalars: dict[str, float]) -> None:
        import tensorflow as tf

        if self._writer is None:
            self.setup(None)
        with self._writer.as_default():
            for key, value in scalars.items():
                tf.summary.scalar(key, value, step=step)
        self._writer.flush()

    def write_images(self, epoch_num: int, step: int, images: dict[str, np.ndarray]) -> None:
        import tensorflow as tf

        if not images:
            return
        if self._writer is None:
            self.setup(None)
        checked = {key: as_image(key, value) for key, value in images.items()}
        with self._writer.as_default():
            for key, image in checked.items():
                tf.summary.image(key, image[None], step=step, max_outputs=1)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
