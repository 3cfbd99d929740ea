"""The bridge to the C core (``aslnet._core``): ``CoreNetwork`` compiles a
model's layers into one C network and runs batches through it."""
from .network import CoreNetwork

__all__ = ["CoreNetwork"]
