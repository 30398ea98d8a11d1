"""Devices and workers: device strings, GPU ids, strategies, chief/worker
facts, and the fixed-shape collectives that cross workers.

May import: ``infer_callbacks._util``.
"""
