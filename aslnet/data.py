"""``tf.data``'s names for aslnet's datasets: ``aslnet.data.Dataset``, ``AUTOTUNE``,
``INFINITE_CARDINALITY``, ``UNKNOWN_CARDINALITY`` (the pipeline lives in
``aslnet.utils.dataset_ops``)."""
from .utils.dataset_ops import (AUTOTUNE, INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, Dataset,
                                Deferred, EagerArray)

__all__ = ["Dataset", "Deferred", "EagerArray", "AUTOTUNE", "INFINITE_CARDINALITY",
           "UNKNOWN_CARDINALITY"]
