"""Monitors: the ``Monitors`` callback and one module per writer
(``ScalarPrinter``, ``JSONWriter``, ``TFEventWriter``). They decide where
numbers go, never what is measured.

May import: ``fit`` (to meet the run's producers), ``distribute``, ``_util``.
"""
