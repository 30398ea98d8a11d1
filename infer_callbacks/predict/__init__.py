"""After training: ``PredictConfig``, ``OfflinePredictor`` and
``ModelExporter`` (SavedModel, frozen GraphDef, TFLite).

May import: ``checkpoints``, ``towers``, ``distribute``, ``_util``; never the trainer.
"""
