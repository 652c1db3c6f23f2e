"""Stage 2, learn to answer: reward F1(answer, gold), -2 when the response is malformed; it
starts from stage 1's `final/` export (`model.path`). `python -m stages.stage2 --help` lists
every key."""

import sys

from stages.run import main

DEFAULT_CONFIG = "configs/embedded/stage2.yaml"

if __name__ == "__main__":
    sys.exit(main(DEFAULT_CONFIG))
