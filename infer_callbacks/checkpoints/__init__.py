"""Checkpoints: the one checkpoint layout, restoring with mismatch reports,
``ModelSaver`` (the latest N) and ``MinSaver`` / ``MaxSaver`` (the best by a
logged value).

May import: ``fit`` (to meet the run's producers), ``distribute``, ``_util``.
"""
