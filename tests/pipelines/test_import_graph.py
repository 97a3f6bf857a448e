"""The package's import graph: no cycles, layers only look down, imports at the top unless a reason is written
down, and the engines never pull in the CLI.

A cycle between modules (even through imports inside functions) means neither can be read,
tested or moved without the other; the graph is read from the source (every import statement
except type-checking-only ones), so a lazy import cannot hide one.
"""

import subprocess
import sys

from defectops.import_graph import (
    LAZY_BY_DESIGN,
    UPWARD_BY_DESIGN,
    graph,
    layer,
    lazy_imports,
    libraries_loaded_by,
    modules,
    upward_imports,
)


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
    assert {"defectops.components.train.step", "defectops.pipelines.engines.kfp"} <= set(modules())  # walked it all
    imports = graph()
    assert find_cycle(imports) is None, " -> ".join(find_cycle(imports))


def test_an_engine_does_not_import_the_cli():
    probe = ("import sys, defectops.pipelines.engines.kfp, defectops.pipelines.engines.stage\n"
             "print('defectops.cli' in sys.modules)")
    reply = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert reply.stdout.strip().splitlines()[-1] == "False", reply.stderr


def test_the_endpoint_checks_what_it_loads_without_the_exporter():
    """What may be served (hashes, approval, variant records) lives in deploy/verify.py: the endpoint and the
    inspector's page never import ONNX export, INT8 calibration or the drift reference (deploy/step.py)."""
    from defectops.import_graph import closure

    for module in ("defectops.components.deploy.server", "defectops.components.deploy.serving",
                   "defectops.components.deploy.verify", "defectops.ui.inspect"):
        assert "defectops.components.deploy.step" not in closure(module), module
    assert "defectops.components.deploy.verify" in closure("defectops.components.deploy.step")  # one verifier


def test_every_import_inside_a_function_defers_a_heavy_library_or_is_listed_with_its_reason():
    found = lazy_imports()
    unexplained = sorted(edge for edge, why in found.items() if why is None)
    assert unexplained == [], "move these imports to the module's top, or list them in LAZY_BY_DESIGN with why"
    assert set(LAZY_BY_DESIGN) <= set(found), "LAZY_BY_DESIGN names imports that are no longer inside functions"
    assert found["defectops.components.train.step", "defectops.pretrained"] == "defers timm, torch"


def test_what_an_import_loads_is_read_through_the_projects_own_modules():
    assert "torch" in libraries_loaded_by("defectops.anomaly.memory")  # imports torch itself
    assert "sqlalchemy" in libraries_loaded_by("defectops.feedback.export")  # through records.store
    assert not {"torch", "sqlalchemy", "mlflow"} & libraries_loaded_by("defectops.tiling")


def test_no_module_imports_a_layer_above_its_own():
    assert [layer(m) for m in ("defectops.registries", "defectops.components.train.step",
                               "defectops.components.train.cli", "defectops.pipelines.submission",
                               "defectops.ui.evidence", "defectops.demo")] == \
        ["core", "components", "apps", "pipelines", "apps", "apps"]
    assert upward_imports() == [], "a core module must not import the steps, engines, CLI or web pages"
    assert set(UPWARD_BY_DESIGN) <= {(m, t) for m in modules() for t in graph()[m]}  # no stale exception
