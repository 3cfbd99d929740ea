"""aslnet/_core.pyi (what editors and type checkers see) lists exactly what the
extension has: every module function and class, every Net method and attribute, each
with a docstring and, where the C function parses keywords, the same argument names."""
import ast
import inspect
from pathlib import Path

import pytest

from aslnet import _core

STUB = ast.parse((Path(_core.__file__).parent / "_core.pyi").read_text())


def _public(names):
    return {n for n in names if not n.startswith("_")}


def _defs(body):
    return {node.name: node for node in body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def test_module_names_match():
    assert _public(_defs(STUB.body)) == _public(dir(_core))


def test_net_names_match():
    net = _defs(STUB.body)["Net"]
    assert _public(_defs(net.body)) == _public(vars(_core.Net))


def test_every_stub_entry_has_a_docstring():
    nodes = STUB.body + _defs(STUB.body)["Net"].body
    names = _public(n.name for n in nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef)))
    documented = {n.name for n in nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                  and ast.get_docstring(n)}        # a property's setter needs none
    assert names - documented == set()


@pytest.mark.parametrize("name", ["categorical_crossentropy", "conv_geometry", "layer_output_shape"])
def test_keyword_names_match(name):
    """The C functions' docstrings start with their signature: the stub's names."""
    stub = _defs(STUB.body)[name]
    args = [a.arg for a in stub.args.args + stub.args.kwonlyargs]
    doc = inspect.getdoc(getattr(_core, name))
    assert doc.startswith(f"{name}(")
    documented = doc[len(name) + 1:doc.index(")")].replace("**", "").split(",")
    assert [d.split("=")[0].strip() for d in documented] == args + (
        ["config"] if stub.args.kwarg else [])
