"""The tensorpack-style trainer host: ``TrainConfig``,
``launch_train_with_config`` and the trainers, driving Keras callbacks
through its own ``keras.callbacks.CallbackList`` (it never mutates the
callbacks it is given), and tensorpack's ``Callback`` base class (usable in
``model.fit`` too; it lives here because ``self.trainer.get_predictor`` needs
``predict``).

May import: every package below it (``fit``, ``data``, ``distribute``,
``towers``, ``inferencers``, ``runner``, ``monitors``, ``checkpoints``,
``predict``, ``_util``); never ``sidecar``.
"""
