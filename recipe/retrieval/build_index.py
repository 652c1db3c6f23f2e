"""`python -m recipe.retrieval.build_index --config FILE [--overwrite] [retriever.key=value ...]`.

Builds `retriever.index_dir` from `retriever.corpus` (see `recipe.retrieval.index`); rerunning
after a kill resumes, rerunning after success does nothing (it touches the manifest, so make
sees the target as fresh). `--overwrite` replaces an index built from other inputs.
"""

from __future__ import annotations

import logging
import os
import sys

from recipe.config import parse_cli
from recipe.retrieval.index import build_index
from recipe.retrieval.manifest import MANIFEST_FILE
from recipe.schema import RunConfig

OVERWRITE_FLAG = "--overwrite"


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    argv = list(argv if argv is not None else sys.argv[1:])
    overwrite = OVERWRITE_FLAG in argv
    cfg = parse_cli(RunConfig, [a for a in argv if a != OVERWRITE_FLAG])
    out = build_index(cfg.retriever, overwrite=overwrite)
    os.utime(out / MANIFEST_FILE)
    print(f"index ready: {out}")


if __name__ == "__main__":
    main()
