"""Every command the documentation names exists: each `make <target>` in a code span, a code
block or a marker's description is a target `make -n` accepts, and each `python -m <module>` of
this project answers `--help` with exit status 0. The documentation is every tracked Markdown
file, the help texts and docstrings of the Python sources, the configs, the Makefile and the
packaging files."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = {"recipe", "stages", "data_filtering", "rewards", "miniwiki", "demo", "benchmarks"}
PATTERNS = ("*.md", "*.py", "*.yaml", "*.toml", "*.cfg", "Makefile")

MODULE = re.compile(r"python -m ([A-Za-z_][\w.]*[\w])")
# `make ...` inside a code span or as a command line of a code block; "(make x)" as in the
# pytest markers' descriptions. Prose ("a make target") matches neither.
CODE_SPAN = re.compile(r"`([^`\n]+)`")
MAKE = re.compile(r"(?:^|[\s;&|(])make((?:\s+[^\s;&|`)]+)+)")
PAREN_MAKE = re.compile(r"\(make ([\w-]+)\)")


def _documents() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", *PATTERNS], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    paths = [REPO / name for name in listed]
    return [p for p in paths if p.is_file() and p.name != Path(__file__).name]


def _targets_in(text: str) -> set[str]:
    targets = set(PAREN_MAKE.findall(text))
    snippets = CODE_SPAN.findall(text) + re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
    for snippet in snippets:
        for words in MAKE.findall(snippet):
            # the first word that is neither an option nor a VAR=value assignment
            names = [w for w in words.split() if not w.startswith("-") and "=" not in w]
            if names and re.fullmatch(r"[a-z][\w-]*", names[0]):
                targets.add(names[0])
    return targets


@cache
def named_commands() -> tuple[dict[str, str], dict[str, str]]:
    """{make target: a file naming it}, {module: a file naming it}."""
    targets, modules = {}, {}
    for path in _documents():
        text = path.read_text(errors="replace")
        where = str(path.relative_to(REPO))
        for target in _targets_in(text):
            targets.setdefault(target, where)
        for module in MODULE.findall(text):
            if module.split(".")[0] in OURS:
                modules.setdefault(module, where)
    return targets, modules


def test_the_scan_finds_the_main_commands():
    targets, modules = named_commands()
    assert {"stage1", "stage2", "test", "filter", "eval"} <= set(targets)
    assert {"stages.stage1", "stages.evaluate", "data_filtering"} <= set(modules)


@pytest.mark.parametrize("target", sorted(named_commands()[0]))
def test_every_named_make_target_exists(target):
    run = subprocess.run(
        ["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, f"`make {target}` ({named_commands()[0][target]}): {run.stderr}"


# runpy warns when it reruns a module an earlier test imported; the rerun is the point.
@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module", sorted(named_commands()[1]))
def test_every_named_module_answers_help(module, monkeypatch, capsys):
    # In this process, as `python -m` runs it: the modules that import torch then share one
    # import instead of paying for it once each.
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    named_in = named_commands()[1][module]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        assert e.code in (0, None), f"`python -m {module} --help` ({named_in}) exited {e.code}"
    except ImportError as e:
        pytest.fail(f"`python -m {module}` ({named_in}) does not exist: {e}")
    out = capsys.readouterr().out
    assert out.strip(), f"`python -m {module} --help` ({named_in}) printed nothing"
