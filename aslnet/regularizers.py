"""Keras's ``regularizers``, so that scripts that build them import; aslnet
trains without weight penalties: a layer given one with a non-zero factor
refuses it (``kernel_regularizer=None`` or a zero factor is taken).  For
weight decay use the optimizer's (``weight_decay=``) where it has one."""

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get"]


class Regularizer:
    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __call__(self, x):
        raise NotImplementedError(f"{type(self).__name__}: aslnet does not train with weight "
                                  "penalties (see README's Keras API table)")


class L1L2(Regularizer):
    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = float(l1), float(l2)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


l1, l2 = L1, L2


def l1_l2(l1=0.01, l2=0.01):
    return L1L2(l1=l1, l2=l2)


def get(identifier):
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, dict):
        return {"L1": L1, "L2": L2, "L1L2": L1L2}[identifier["class_name"]].from_config(
            identifier.get("config") or {})
    if isinstance(identifier, str) and identifier.lower() in ("l1", "l2", "l1_l2"):
        return {"l1": L1, "l2": L2, "l1_l2": l1_l2}[identifier.lower()]()
    raise ValueError(f"Could not interpret regularizer identifier: {identifier!r}")
