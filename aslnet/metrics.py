"""Metrics: the names ``compile(metrics=...)`` takes.  aslnet computes one
accuracy (argmax of the output against the label, whatever the label's
encoding), under each of Keras's names for it."""
import numpy as np

__all__ = ["resolve", "ACCURACIES", "count_correct"]

ACCURACIES = ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy")


def resolve(metric):
    """The log name of an accuracy metric given by name or as a Keras
    metric object."""
    name = metric if isinstance(metric, str) else getattr(metric, "name", None)
    if name not in ACCURACIES:
        raise ValueError(f"Unsupported metric {metric!r}; aslnet has 'accuracy' (also "
                         f"named {', '.join(ACCURACIES[1:])})")
    return name


def count_correct(y, pred):
    """Samples whose predicted class (argmax) is the target's."""
    n = len(y)
    return int(np.sum(np.argmax(y.reshape(n, -1), 1) == np.argmax(pred.reshape(n, -1), 1)))
