"""Mixed precision, named as in ``keras.mixed_precision``.

    aslnet.mixed_precision.set_global_policy("mixed_bfloat16")  # models made from now on
    model.dtype_policy = "mixed_bfloat16"                        # or one model

Under ``"mixed_bfloat16"`` every convolution computes in bfloat16, as in
Keras: its input, its weights and, when training, its output gradient are
rounded to bfloat16, products are accumulated in float32, and outputs and
gradients come back as float32.  Weights and optimizer state stay float32
(``variable_dtype``).  In inference mode (``predict``, ``evaluate``, the
frozen layers of ``fit``) convolutions run fused with their frozen batch
normalization and ReLU6, and the activations passed from one to the next are
stored as bfloat16.  Batch normalization, pooling, activations and Dense
stay float32 (Keras would run Dense in bfloat16 too).

It needs a CPU with AVX512_BF16 (AMD Zen 4 and later, Intel Cooper Lake,
Sapphire Rapids and later), where it is about twice as fast; elsewhere the
policy is accepted and the model computes in float32
(:func:`bfloat16_supported` tells which).  Its accuracy cost on the
sign-language digits is measured in the README.
"""
import warnings

from . import _core

_POLICIES = {"float32": ("float32", "float32"),
             "mixed_bfloat16": ("bfloat16", "float32")}


class DTypePolicy:
    """A named dtype policy: ``compute_dtype`` and ``variable_dtype``."""

    def __init__(self, name):
        if isinstance(name, DTypePolicy):
            name = name.name
        elif name is None:                 # as set_global_policy(None): the default
            name = "float32"
        elif not isinstance(name, str) and isinstance(getattr(name, "name", None), str):
            name = name.name               # a Keras DTypePolicy / tf.keras Policy object
        if not isinstance(name, str) or name not in _POLICIES:
            hint = (" (aslnet has no float16 path: use 'mixed_bfloat16')"
                    if isinstance(name, str) and "float16" in name else "")
            raise ValueError(f"Unknown dtype policy {name!r}{hint}; "
                             f"available: {sorted(_POLICIES)}")
        self.name = name
        self.compute_dtype, self.variable_dtype = _POLICIES[name]

    def __eq__(self, other):
        return isinstance(other, DTypePolicy) and other.name == self.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return f'<DTypePolicy "{self.name}">'

    def get_config(self):
        """``{"name": ...}``: what Keras saves of a policy."""
        return {"name": self.name}


Policy = DTypePolicy   # Keras 2's name

_global = DTypePolicy("float32")


def bfloat16_supported():
    """True if this CPU computes bfloat16 convolutions natively."""
    return bool(_core.bfloat16_supported())


def _check_supported(policy):
    if policy.compute_dtype == "bfloat16" and not bfloat16_supported():
        warnings.warn("this CPU has no native bfloat16 (AVX512_BF16): "
                      f"dtype policy '{policy.name}' computes in float32", stacklevel=3)
    return policy


def set_global_policy(policy):
    """Set the dtype policy of models created from now on (``None``: float32)."""
    global _global
    _global = _check_supported(DTypePolicy("float32" if policy is None else policy))


def global_policy():
    """The dtype policy new models get."""
    return _global
