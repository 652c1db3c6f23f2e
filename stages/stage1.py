"""Stage 1, learn to search: reward 0.5 x [a well-formed query] + 0.5 x [well-formed response]
(R1-Searcher, arXiv:2503.05592, section 3.1). `python -m stages.stage1 --help` lists every key."""

import sys

from stages.run import main

DEFAULT_CONFIG = "configs/embedded/stage1.yaml"

if __name__ == "__main__":
    sys.exit(main(DEFAULT_CONFIG))
