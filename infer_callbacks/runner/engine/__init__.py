"""The engine: binding a model to a runner's configuration (devices, the
traced step), the compiled step that runs several batches per call, the host
side of a call's results (chunks) and the background pipeline.

May import: ``data``, ``distribute``, ``towers``, ``_util``.
"""
