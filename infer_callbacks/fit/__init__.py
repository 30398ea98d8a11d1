"""Where our callbacks meet Keras's ``fit``: ``keras_glue`` (the one module
that reads a caller's frame, to join the ``CallbackList`` that hands a
callback its model, and the run the callbacks of one ``fit`` share),
``report`` (what one validation run reports, and publishing into ``logs``),
``set_keys`` (how a named set's name enters a result key) and ``producer``
(the written protocol of a validation producer: what ``Monitors`` and the
savers may ask of a runner).

The bottom layer of the callbacks: ``runner``, ``monitors`` and
``checkpoints`` meet here, so that the last two never import ``runner``.

May import: ``_util``.
"""
