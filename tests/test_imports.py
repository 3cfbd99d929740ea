"""The package's import structure (issue 12): ``aslnet.saving`` imports
nothing from ``aslnet.models``, and no two modules of ``aslnet`` import each
other, directly or through a chain.

Imports are read from the source with ``ast``, anywhere in a module (a lazy
import inside a function counts: it is a dependency all the same).  Edges:
``import a.b.c`` -> the deepest of a.b.c, a.b, a that is a module of the
package; ``from .x import y`` -> ``x.y`` when that is a submodule, else
``x``.  Importing a module runs its parent packages' ``__init__`` first;
that implicit edge is not counted, and neither is a package's ``__init__``
importing its own submodules (re-exporting its children), so a cycle is
two modules that really need each other."""
import ast
import textwrap
from pathlib import Path

import aslnet

PACKAGE_DIR = Path(aslnet.__file__).resolve().parent


def modules_of(package_dir):
    """{dotted name: (path, is_package)} of every module under package_dir."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def _deepest_module(dotted, modules):
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in modules:
            return name
    return None


def imports_of(name, modules):
    """[(imported module, line)] for the package's modules that ``name``
    imports, at any depth of its code."""
    path, is_package = modules[name]
    package = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod
                       for a in node.names]
        else:
            continue
        for t in targets:
            m = _deepest_module(t, modules)
            if m is not None and m != name:
                out.append((m, node.lineno))
    return out


def import_graph(package_dir):
    """{module: set of modules it needs}, without the edges from a package's
    ``__init__`` to its own submodules (see the module docstring)."""
    modules = modules_of(package_dir)
    graph = {}
    for name, (_, is_package) in modules.items():
        graph[name] = {m for m, _ in imports_of(name, modules)
                       if not (is_package and m.startswith(name + "."))}
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan),
    each as a sorted list; empty when the graph has no cycle."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        v = todo.pop()
        for w in graph.get(v, ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def _is_under(name, package):
    return name == package or name.startswith(package + ".")


# -- the rules ------------------------------------------------------------------------
def test_saving_imports_nothing_from_models():
    modules = modules_of(PACKAGE_DIR)
    saving = [m for m in modules if _is_under(m, "aslnet.saving")]
    assert "aslnet.saving.serialization" in saving      # the package is where we look
    direct = [f"{modules[m][0].relative_to(PACKAGE_DIR.parent)}:{line} imports {t}"
              for m in saving for t, line in imports_of(m, modules)
              if _is_under(t, "aslnet.models")]
    assert not direct, "aslnet.saving must not import aslnet.models:\n" + "\n".join(direct)
    graph = import_graph(PACKAGE_DIR)
    through = sorted(t for t in reachable(graph, "aslnet.saving") if _is_under(t, "aslnet.models"))
    assert not through, f"aslnet.saving reaches {through} through other modules"


def test_no_import_cycles():
    found = cycles(import_graph(PACKAGE_DIR))
    assert not found, "modules that import each other (directly or through a chain): " + \
        "; ".join(" <-> ".join(c) for c in found)


# -- the checker itself, on a made-up package ------------------------------------------
def _package(tmp_path, files):
    for rel, text in files.items():
        p = tmp_path / "pkg" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp_path / "pkg"


def test_checker_finds_lazy_and_chained_cycles(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "from . import a, sub\nfrom .sub import c\n",
        "a.py": "def f():\n    from .sub.c import g\n",            # lazy: counts
        "b.py": "import pkg.a\n",
        "sub/__init__.py": "from .c import g\n",                    # re-export: not a cycle
        "sub/c.py": "from .. import b\ndef g(): pass\n",            # c -> b -> a -> c
        "d.py": "from .sub import c\n",
    })
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.c"} and graph["pkg.sub"] == set()
    assert graph["pkg.sub.c"] == {"pkg.b"} and graph["pkg.d"] == {"pkg.sub.c"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    assert reachable(graph, "pkg.d") == {"pkg.a", "pkg.b", "pkg.sub.c"}


def test_checker_accepts_a_package_reexporting_its_children(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "from .sub import f\n",
        "sub/__init__.py": "from .x import f\nfrom .y import h\n",
        "sub/x.py": "from .y import h\ndef f(): pass\n",
        "sub/y.py": "def h(): pass\n",
        "user.py": "from .sub import f\nfrom .sub.x import f as g\n",
    })
    assert cycles(import_graph(pkg)) == []
