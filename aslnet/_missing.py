"""Keras names aslnet lacks: ``from aslnet.layers import MaxPooling3D`` still
imports (a script that imports a name and never uses it runs on), and using
the name raises NotImplementedError naming the missing feature and the way out."""


def missing(module, name, why=""):
    """A stand-in for Keras's ``module.name``: making, calling or subclassing it
    raises NotImplementedError with the message."""
    message = (f"{module}.{name} is not supported by aslnet{': ' + why if why else ''} "
               "(see README's Keras API table)")

    def refuse(*args, **kwargs):
        raise NotImplementedError(message)

    return type(name, (), {"__init__": refuse, "__init_subclass__": classmethod(refuse),
                           "__doc__": message, "__module__": module, "_aslnet_missing": True})
