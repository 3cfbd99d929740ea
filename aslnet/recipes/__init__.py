"""Recipes on top of the Keras API: aslnet's fine-tuning schedule, and
re-created batch-norm statistics for folded pretrained weights."""
from .batch_norm import recalibrate_batch_norm
from .fine_tune import fine_tune

__all__ = ["fine_tune", "recalibrate_batch_norm"]
