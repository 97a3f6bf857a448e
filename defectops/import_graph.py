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

from defectops.errors import DefectopsError


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


# Third-party packages that cost over 0.2 s to import on a 2-core machine (`bench/import_costs.py` prints each;
# sagemaker is a lazy package whose `sagemaker.core`, what the project imports, costs seconds). A project import
# may sit inside a function only when it defers one of these that the importing module does not already load, or
# when LAZY_BY_DESIGN names it: nothing else pays for the surprise of a hidden import.
HEAVY_LIBRARIES = frozenset({
    "boto3", "cv2", "evidently", "fastapi", "great_expectations", "kfp", "matplotlib", "mlflow", "onnx",
    "onnxruntime", "openvino", "optuna", "pandas", "sagemaker", "sklearn", "sqlalchemy", "timm", "torch",
    "torchvision", "ultralytics", "uvicorn",
})
LAZY_BY_DESIGN = {
    ("defectops", "defectops.pipelines.submission"):
        "the package's facade (`defectops.submit`): `import defectops` must not load the engines",
    ("defectops.pipelines.engines.kfp", "defectops.components.tune.step"):
        "KFP ships the fan-out helpers to their pods as source text: their imports go inside",
    ("defectops.pipelines.engines.kfp", "defectops.pipelines.engines.stage"):
        "KFP ships the fan-out helpers to their pods as source text: their imports go inside",
}


def _imported_names(name: str, module_level: bool) -> frozenset[str]:
    """Every absolute name `name`'s source imports (`module_level`: only those its import itself runs)."""
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
    return frozenset(found)


@cache  # each stage's closure walks the same modules: parse each file once
def imports_of(name: str, module_level: bool = False) -> frozenset[str]:
    """The package's modules that `name` imports anywhere in its source (`module_level`: only those its
    import itself runs, not those inside functions)."""
    return frozenset(m for m in _imported_names(name, module_level) if m in modules() and m != name)


@cache
def libraries_loaded_by(name: str) -> frozenset[str]:
    """The third-party packages `import name` loads itself, through the project's modules it runs."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(imports_of(current, module_level=True))
        todo.extend(p for p in (current.rsplit(".", i)[0] for i in range(1, current.count(".") + 1))
                    if p in modules())
    return frozenset(n.partition(".")[0] for m in seen for n in _imported_names(m, True)
                     if n.partition(".")[0] != "defectops")


def lazy_imports() -> dict[tuple[str, str], str | None]:
    """(importer, imported) for every project import inside a function body, and its reason (None: none)."""
    found = {}
    for name in modules():
        for target in sorted(imports_of(name) - imports_of(name, module_level=True)):
            deferred = HEAVY_LIBRARIES & (libraries_loaded_by(target) - libraries_loaded_by(name))
            found[name, target] = LAZY_BY_DESIGN.get((name, target)) or (
                f"defers {', '.join(sorted(deferred))}" if deferred else None)
    return found


def layer(name: str) -> str:
    """core (defectops.*: data, registry, rules) < components (the steps) < pipelines (the engines) < apps (CLI,
    web pages, the demo): a module may import its own layer and those below, never above."""
    if name.startswith(("defectops.ui", "defectops.cli")) or name.endswith(".cli") or name == "defectops.demo":
        return "apps"
    if name.startswith("defectops.components"):
        return "components"
    if name.startswith("defectops.pipelines"):
        return "pipelines"
    return "core"


LAYERS = ("core", "components", "pipelines", "apps")
UPWARD_BY_DESIGN = {
    ("defectops", "defectops.pipelines.submission"):
        "the package's facade offers `defectops.submit`, the one way a run starts",
    ("defectops.components.monitor.retrain", "defectops.pipelines.submission"):
        "a drift alert starts its retraining run the one way runs start",
}


def upward_imports() -> list[tuple[str, str]]:
    """(importer, imported) where a module imports a higher layer than its own, beyond UPWARD_BY_DESIGN's."""
    return sorted((name, target) for name in modules() for target in imports_of(name)
                  if LAYERS.index(layer(target)) > LAYERS.index(layer(name))
                  and (name, target) not in UPWARD_BY_DESIGN)


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
            raise DefectopsError(f"{module} is installed from {path}, outside {root}: DVC watches the project's "
                                 "source, so render the pipeline from a checkout installed with 'pip install -e .'")
        files.append(path.relative_to(root).as_posix())
    return files
