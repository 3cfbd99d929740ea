"""Griffe extension (mkdocs.yml, mkdocstrings ``extensions``): the Sphinx roles some
docstrings use, ``:class:`aslnet.mixed_precision.DTypePolicy```, become links in the
API reference (``[`aslnet.mixed_precision.DTypePolicy`][aslnet.mixed_precision.DTypePolicy]``,
resolved by mkdocs-autorefs: a name that is not in the reference fails the strict build).
A name without a dot is taken in the docstring's module; names in the modules the
reference does not show (``aslnet.trainers``, ``aslnet.engine``) stay code."""
import re

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|exc|data|obj):`~?([\w.]+)`")
_UNDOCUMENTED = ("aslnet.trainers", "aslnet.engine")


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`name``` as an autorefs link in every docstring."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None and ":" in obj.docstring.value:
            obj.docstring.value = _ROLE.sub(lambda m: _link(m.group(1), obj),
                                            obj.docstring.value)


def _link(name, obj):
    target = name if "." in name else f"{obj.module.path}.{name}"
    if target.startswith(_UNDOCUMENTED):
        return f"`{name}`"
    return f"[`{name}`][{target}]"
