"""The dependency direction of DESIGN.md, read from every module's imports: `rewards/` imports
nothing of ours; `recipe/` never imports `stages/`, `data_filtering/` or `miniwiki/`; the demo
world (`demo/`) is imported by tests and benchmarks only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("recipe", "rewards", "stages", "data_filtering", "miniwiki", "demo")
FORBIDDEN = {
    "rewards": {"recipe", "stages", "data_filtering", "miniwiki", "demo"},
    "recipe": {"stages", "data_filtering", "miniwiki", "demo"},
    "data_filtering": {"stages", "miniwiki", "demo"},
    "miniwiki": {"stages", "demo"},
    "stages": {"demo"},
    "demo": {"stages", "data_filtering", "miniwiki"},
}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & set(PACKAGES)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package):
    wrong = {
        str(path.relative_to(REPO)): sorted(_imported_packages(path) & FORBIDDEN[package])
        for path in (REPO / package).rglob("*.py")
    }
    assert {k: v for k, v in wrong.items() if v} == {}
