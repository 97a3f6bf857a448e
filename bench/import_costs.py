"""What importing a library costs here, each in a fresh interpreter: the measured reason behind
`defectops.import_graph.HEAVY_LIBRARIES` (a project import may sit inside a function only when it defers one of
them), and the CLI's start-up (`defectops --help`), which those deferred imports keep short.

    .venv/bin/python bench/import_costs.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from defectops.import_graph import HEAVY_LIBRARIES

LIGHT = ("numpy", "yaml", "pydantic", "PIL", "typer", "rich", "httpx", "jinja2")
AS_IMPORTED = {"sagemaker": "sagemaker.core"}  # a lazy package: what the project imports of it


def seconds(code: str, repeat: int) -> float:
    """Median wall time of a fresh interpreter running `code`, less the interpreter's own start."""
    def once(snippet: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", snippet], check=True, capture_output=True)
        return time.perf_counter() - start

    bare = statistics.median(once("pass") for _ in range(repeat))
    return statistics.median(once(code) for _ in range(repeat)) - bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'import':28s} {'seconds':>8s}  heavy")
    for name in sorted(HEAVY_LIBRARIES | set(LIGHT), key=str.lower):
        module = AS_IMPORTED.get(name, name)
        heavy = "yes" if name in HEAVY_LIBRARIES else ""
        print(f"{module:28s} {seconds(f'import {module}', args.repeat):8.3f}  {heavy}")
    cli = seconds("import sys; sys.argv = ['defectops', '--help']\nfrom defectops.cli import app\n"
                  "try:\n    app()\nexcept SystemExit:\n    pass", args.repeat)
    print(f"{'defectops --help':28s} {cli:8.3f}")


if __name__ == "__main__":
    main()
