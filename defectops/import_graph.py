"""Which project files a module runs: the package's import graph, read from the source.

Every import statement counts, those inside functions too (a lazy import still runs when the step
does), except `if TYPE_CHECKING:` blocks. DVC uses it so that a stage re-runs when any file its
command can execute changes (a hand-kept list missed shared modules); a test uses it to keep the
graph free of cycles.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from functools import cache
from pathlib import Path


@cache
def modules() -> dict[str, Path]:
    """Every module of the package and its source file (three source folders: pyproject's package-dir)."""
    found = {}
    for package in ("defectops", "defectops.pipelines", "defectops.components"):  # located, not imported
        spec = importlib.util.find_spec(package)
        found[package] = Path(spec.origin)
        for info in pkgutil.walk_packages(spec.submodule_search_locations, f"{package}."):
            spec = importlib.util.find_spec(info.name)
            if spec and spec.origin and spec.origin.endswith(".py"):
                found[info.name] = Path(spec.origin)
    return found


FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


@cache  # each stage's closure walks the same modules: parse each file once
def imports_of(name: str, module_level: bool = False) -> frozenset[str]:
    """The package's modules that `name` imports anywhere in its source (`module_level`: only those its
    import itself runs, not those inside functions)."""
    known, path = modules(), modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    todo = list(ast.parse(path.read_text()).body)
    while todo:
        node = todo.pop()
        if _type_checking_only(node) or (module_level and isinstance(node, FUNCTIONS)):
            continue
        todo.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return frozenset(m for m in found if m in known and m != name)


def graph() -> dict[str, set[str]]:
    return {name: imports_of(name) for name in modules()}


def closure(name: str) -> set[str]:
    """`name` and every module it can import, directly or through others, with the packages they sit in:
    importing `defectops.tiling` runs `defectops/__init__.py` first, but not the functions it defines."""
    seen: dict[str, bool] = {}  # module -> all its imports followed (False: only its module-level ones)
    todo = [(name, True)]
    while todo:
        current, whole = todo.pop()
        if seen.get(current) is True or (current in seen and not whole):
            continue
        seen[current] = whole
        todo.extend((m, True) for m in imports_of(current, module_level=not whole))
        todo.extend((p, False) for p in (current.rsplit(".", i)[0] for i in range(1, current.count(".") + 1))
                    if p in modules())
    return set(seen)


def source_files(name: str, root: Path) -> list[str]:
    """The files of closure(`name`), relative to the project `root` (where the package is checked out)."""
    root = Path(root).resolve()
    files = []
    for module in sorted(closure(name)):
        path = modules()[module].resolve()
        if not path.is_relative_to(root):
            from defectops.errors import DefectopsError

            raise DefectopsError(f"{module} is installed from {path}, outside {root}: DVC watches the project's "
                                 "source, so render the pipeline from a checkout installed with 'pip install -e .'")
        files.append(path.relative_to(root).as_posix())
    return files
