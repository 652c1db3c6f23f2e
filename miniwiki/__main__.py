"""`python -m miniwiki build --config configs/embedded/miniwiki.yaml [key.path=value ...]`.

`--force` rebuilds even when the summary's fingerprint says the files are up to date.
"""

from __future__ import annotations

import json
import sys

from miniwiki.build import WorldsOverlap, build
from miniwiki.config import MiniwikiConfig
from miniwiki.world import WorldTooSmall
from recipe.config import parse_cli

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
    try:
        summary = build(cfg, force=force)
    except (WorldTooSmall, WorldsOverlap) as e:
        print(f"miniwiki: {e}", file=sys.stderr)
        return 2
    summary.pop("files", None)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
