"""`python -m miniwiki build --config configs/embedded/miniwiki.yaml [key.path=value ...]`.

`--force` rebuilds even when the summary's fingerprint says the files are up to date.
"""

from __future__ import annotations

import json
import sys

from miniwiki.build import build
from miniwiki.config import MiniwikiConfig
from recipe.config import parse_cli
from recipe.exit_status import run_reporting

USAGE = "usage: python -m miniwiki build [--config FILE] [--force] [key.path=value ...]"
DEFAULT_CONFIG = "configs/embedded/miniwiki.yaml"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        print("\n`python -m miniwiki build --help` lists every key of the config.")
        return 0
    if not argv or argv[0] != "build":
        print(USAGE, file=sys.stderr)
        return 2
    args = argv[1:]
    force = "--force" in args
    args = [a for a in args if a != "--force"]
    cfg = parse_cli(
        MiniwikiConfig, args, default=DEFAULT_CONFIG, usage=USAGE
    )  # exits 2 on a bad config
    return run_reporting("miniwiki", lambda: _build(cfg, force))


def _build(cfg: MiniwikiConfig, force: bool) -> int:
    summary = build(cfg, force=force)
    summary.pop("files", None)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
