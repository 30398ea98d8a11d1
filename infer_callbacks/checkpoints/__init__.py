"""Checkpoints: the one checkpoint layout, restoring with mismatch reports,
``ModelSaver`` (the latest N) and ``MinSaver`` / ``MaxSaver`` (the k best by a
logged value; ``best_list`` keeps the k best, ``best_saver`` is their callback).

May import: ``fit`` (to meet the run's producers), ``towers`` (a ``ModelDesc``'s weights), ``distribute``, ``_util``.
"""
