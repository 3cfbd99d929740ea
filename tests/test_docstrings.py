"""Every public name has a docstring (the API reference is generated from them).

Public: the functions and classes a public module exports (its ``__all__``, else
its names without a leading underscore) that aslnet defines (not re-exported
NumPy or stdlib names, not the stand-ins for Keras names aslnet lacks), and the
public methods and properties of those classes, inherited ones from aslnet's
own base classes included.  A class needs its own docstring (the reference shows
its base's nowhere); a method that overrides a documented one inherits its
docstring (``inspect.getdoc``; the reference shows it through the
griffe-inherited-docstrings extension).

``KNOWN_MISSING`` lists the names still without one (133 when this test was
written, none since issue 15's docstrings); it may only shrink: a new public
name without a docstring fails, and so does a listed name that gained one
(delete it from the list)."""
import importlib
import inspect

MODULES = ["aslnet", "aslnet.models", "aslnet.layers", "aslnet.optimizers", "aslnet.losses",
           "aslnet.metrics", "aslnet.callbacks", "aslnet.preprocessing.image", "aslnet.utils",
           "aslnet.applications", "aslnet.applications.mobilenet",
           "aslnet.applications.mobilenet_v2", "aslnet.applications.imagenet_utils",
           "aslnet.saving", "aslnet.mixed_precision", "aslnet.recipes", "aslnet.data",
           "aslnet.serving", "aslnet.backend", "aslnet.activations", "aslnet.initializers",
           "aslnet.regularizers"]

KNOWN_MISSING = set()


def _exported(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        obj = getattr(module, name, None)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if getattr(obj, "_aslnet_missing", False):          # stand-in for a Keras name
            continue
        if not getattr(obj, "__module__", "").startswith("aslnet"):
            continue
        yield obj


def public_names():
    """{qualified name: object} for every public function, class, method and
    property, named where it is defined (``aslnet.models.model.Model.fit``)."""
    found = {}
    for module_name in MODULES:
        for obj in _exported(importlib.import_module(module_name)):
            key = f"{obj.__module__}.{obj.__qualname__}"
            found[key] = obj
            if not inspect.isclass(obj):
                continue
            for base in obj.__mro__:
                if not base.__module__.startswith("aslnet"):
                    continue
                for attr, value in vars(base).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(value, property):
                        found[f"{base.__module__}.{base.__qualname__}.{attr}"] = value
                    elif inspect.isfunction(getattr(value, "__func__", value)):
                        # through the class, so that an override inherits the docstring
                        found[f"{base.__module__}.{base.__qualname__}.{attr}"] = \
                            getattr(obj, attr)
    return found


def _doc(obj):
    if inspect.isclass(obj):                  # its own, not inherited from a base class
        return (vars(obj).get("__doc__") or "").strip()
    return inspect.getdoc(obj)


def undocumented():
    return {name for name, obj in public_names().items() if not _doc(obj)}


def test_public_names_are_many():
    # guards the walk itself: a broken walk would find nothing and pass
    names = public_names()
    assert len(names) > 300
    assert "aslnet.models.model.Model" in names
    assert "aslnet.trainers.trainer.Trainer.fit" in names        # inherited by Model


def test_no_new_public_name_without_docstring():
    new = sorted(undocumented() - KNOWN_MISSING)
    assert not new, (f"{len(new)} public name(s) without a docstring (the API reference "
                     "shows them empty); write one:\n  " + "\n  ".join(new))


def test_known_missing_list_is_true():
    fixed = sorted(KNOWN_MISSING - undocumented())
    assert not fixed, ("these names now have a docstring (or are gone): delete them from "
                       "KNOWN_MISSING in tests/test_docstrings.py:\n  " + "\n  ".join(fixed))
