"""The tensorpack-style trainer host: ``TrainConfig``,
``launch_train_with_config`` and the trainers, driving Keras callbacks
through its own ``keras.callbacks.CallbackList`` (it never mutates the
callbacks it is given).

May import: every package below it (``towers``, ``runner``, ``checkpoints``,
``monitors``, ``distribute``, ``_util``).
"""
