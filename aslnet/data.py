"""``tf.data``'s names for aslnet's datasets: ``aslnet.data.Dataset``, ``AUTOTUNE``,
``INFINITE_CARDINALITY``, ``UNKNOWN_CARDINALITY`` (the pipeline lives in
``aslnet.utils.dataset_ops``)."""
from .utils.dataset_ops import (AUTOTUNE, INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, Dataset,
                                EagerArray)

__all__ = ["Dataset", "EagerArray", "AUTOTUNE", "INFINITE_CARDINALITY", "UNKNOWN_CARDINALITY"]
