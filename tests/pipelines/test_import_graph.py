"""The package's import graph: no cycles, and the engines never pull in the CLI.

A cycle between modules (even through imports inside functions) means neither can be read,
tested or moved without the other; the graph is read from the source (every import statement
except type-checking-only ones), so a lazy import cannot hide one.
"""

import ast
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import defectops
import defectops.components


def _modules() -> dict[str, Path]:
    found = {"defectops": Path(defectops.__file__)}
    for package in (defectops, defectops.components):  # two source folders (pyproject's package-dir)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            spec = importlib.util.find_spec(info.name)
            if spec and spec.origin and spec.origin.endswith(".py"):
                found[info.name] = Path(spec.origin)
    return found


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found, todo = set(), list(ast.parse(path.read_text()).body)
    while todo:
        node = todo.pop()
        if _type_checking_only(node):
            continue
        todo.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return {m for m in found if m in modules and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_reports_the_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_cycle():
    modules = _modules()
    assert "defectops.components.train.step" in modules and "defectops.engines.kfp" in modules  # walked it all
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_an_engine_does_not_import_the_cli():
    probe = "import sys, defectops.engines.kfp, defectops.engines.stage; print('defectops.cli' in sys.modules)"
    reply = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert reply.stdout.strip().splitlines()[-1] == "False", reply.stderr
