"""Keras's ``regularizers``, so that scripts that build them import; aslnet
trains without weight penalties: a layer given one with a non-zero factor
refuses it (``kernel_regularizer=None`` or a zero factor is taken).  For
weight decay use the optimizer's (``weight_decay=``) where it has one."""

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get"]


class Regularizer:
    """Base class of Keras's weight regularizers.

    aslnet does not train with weight penalties: a regularizer can be built, stored
    in a config and read back, but calling one raises ``NotImplementedError``, and a
    layer refuses one with a non-zero factor.  Use the optimizer's ``weight_decay=``.
    """
    def get_config(self):
        """The constructor's arguments as a dict (Keras's ``get_config``): what
        :meth:`from_config` takes back."""
        return {}

    @classmethod
    def from_config(cls, config):
        """Build the regularizer from the dict ``get_config`` returned (Keras's ``from_config``)."""
        return cls(**config)

    def __call__(self, x):
        raise NotImplementedError(f"{type(self).__name__}: aslnet does not train with weight "
                                  "penalties (see README's Keras API table)")


class L1L2(Regularizer):
    """Keras's ``L1L2``: the penalty ``l1 * sum(|x|) + l2 * sum(x**2)``.

    :param l1: the L1 factor (default 0.0).
    :param l2: the L2 factor (default 0.0).

    Stored only: aslnet refuses a non-zero factor in training (see :class:`Regularizer`).
    """
    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = float(l1), float(l2)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """Keras's ``L1`` (also ``l1``): the penalty ``l1 * sum(|x|)``.

    :param l1: the factor (default 0.01).
    """
    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """Keras's ``L2`` (also ``l2``): the penalty ``l2 * sum(x**2)``.

    :param l2: the factor (default 0.01).
    """
    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


l1, l2 = L1, L2


def l1_l2(l1=0.01, l2=0.01):
    """Keras's ``l1_l2``: an :class:`L1L2` with both factors (default 0.01 each)."""
    return L1L2(l1=l1, l2=l2)


def get(identifier):
    """A regularizer from an identifier, as Keras's ``regularizers.get``.

    :param identifier: ``None`` or a :class:`Regularizer` (returned as is), a Keras
        config dict (``{"class_name": "L2", "config": {...}}``) or a name
        (``"l1"``, ``"l2"``, ``"l1_l2"``, with Keras's default factors).
    :raises ValueError: for anything else.
    """
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, dict):
        return {"L1": L1, "L2": L2, "L1L2": L1L2}[identifier["class_name"]].from_config(
            identifier.get("config") or {})
    if isinstance(identifier, str) and identifier.lower() in ("l1", "l2", "l1_l2"):
        return {"l1": L1, "l2": L2, "l1_l2": l1_l2}[identifier.lower()]()
    raise ValueError(f"Could not interpret regularizer identifier: {identifier!r}")
