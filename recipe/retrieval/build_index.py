"""`python -m recipe.retrieval.build_index --config FILE [--overwrite] [retriever.key=value ...]`.

Builds `retriever.index_dir` from `retriever.corpus` (see `recipe.retrieval.index`); rerunning
after a kill resumes, rerunning after success does nothing (it touches the manifest, so make
sees the target as fresh). `--overwrite` replaces an index (or a partial build) of other
inputs, keeping the doc store and embeddings when only the factory or BM25 settings changed.
A user's mistake (a missing corpus, a bad factory, an index of other inputs ...) exits 2 with
one line on stderr, as a bad config does.
"""

from __future__ import annotations

import logging
import os
import sys

from recipe.config import parse_cli
from recipe.exit_status import run_reporting
from recipe.retrieval.index import build_index
from recipe.retrieval.manifest import MANIFEST_FILE
from recipe.schema import RunConfig

OVERWRITE_FLAG = "--overwrite"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    argv = list(argv if argv is not None else sys.argv[1:])
    overwrite = OVERWRITE_FLAG in argv
    cfg = parse_cli(RunConfig, [a for a in argv if a != OVERWRITE_FLAG])
    return run_reporting("build_index", lambda: _build(cfg, overwrite))


def _build(cfg: RunConfig, overwrite: bool) -> int:
    out = build_index(cfg.retriever, overwrite=overwrite)
    os.utime(out / MANIFEST_FILE)
    print(f"index ready: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
