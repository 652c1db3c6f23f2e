"""The layout of docs/design.md: the dependency direction, read from every module's imports
(`rewards/` imports nothing of ours; `recipe/` never imports `stages/`, `data_filtering/` or
`miniwiki/`; the demo world (`demo/`) is imported by tests and benchmarks only), and its layout
table naming every top-level folder there is."""

from __future__ import annotations

import ast
import re
import subprocess
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


def test_the_design_layout_table_names_every_top_level_folder():
    design = (REPO / "docs" / "design.md").read_text()
    section = design.split("## Layout", 1)[1].split("\n\n", 2)[1]
    named = set(re.findall(r"^\| `([\w.-]+)/` \|", section, re.M))
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    folders = {path.split("/")[0] for path in tracked if "/" in path and not path.startswith(".")}
    assert named == folders


# One home per mechanism: the trainer lives with its pieces, the evaluation in its own package,
# and neither reaches into the other's internals.
HOMES = {
    "recipe/training": {
        "trainer.py",
        "update.py",
        "checkpoint.py",
        "monitors.py",
        "memory_plan.py",
    },
    "recipe/evaluation": {"runner.py", "scoring.py", "report.py", "predictions.py", "judge.py"},
}


def _modules_imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_training_and_evaluation_each_live_in_one_package():
    for folder, modules in HOMES.items():
        assert modules <= {p.name for p in (REPO / folder).glob("*.py")}, folder
    top_level = {p.stem for p in (REPO / "recipe").glob("*.py")}
    assert not top_level & {"trainer", "evaluation", "eval_report", "eval_run", "judge"}


def test_the_evaluation_imports_nothing_of_the_trainer():
    imported = set().union(
        *(_modules_imported(p) for p in (REPO / "recipe/evaluation").glob("*.py"))
    )
    assert {m for m in imported if m.startswith("recipe.training")} <= {
        "recipe.training.ranks",  # the evaluation shares its questions over the same ranks
        "recipe.training.metrics",  # the folder name of the logs it plots
    }


def test_the_rollout_engine_is_built_in_one_place():
    calls = {}
    for package in ("recipe", "stages", "data_filtering", "miniwiki"):
        for path in (REPO / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            n = sum(
                isinstance(node, ast.Call) and getattr(node.func, "id", "") == "RolloutEngine"
                for node in ast.walk(tree)
            )
            if n:
                calls[str(path.relative_to(REPO))] = n
    assert calls == {"recipe/rollout.py": 1}
