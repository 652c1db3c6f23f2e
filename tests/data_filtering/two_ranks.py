"""The filter of the tiny filtering world on one of several launched ranks:

    deepspeed --num_gpus 2 tests/data_filtering/two_ranks.py CONFIG.pkl OUT_DIR [KILL_ROUND]

Each rank runs the whole filter with AnswerRate steering its reference policy, records the
engine calls it made in OUT_DIR/rank<r>.calls.json, and with KILL_ROUND rank 1 dies (exit 9,
no clean-up, as under kill -9) right after its first call of that round.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from data_filtering.pipeline import run_filter  # noqa: E402
from recipe.policy import load_tokenizer  # noqa: E402
from recipe.training.ranks import join_launched_ranks, leave_ranks  # noqa: E402
from tests.data_filtering.filter_world import CountingRunner, steered_rounds  # noqa: E402


def main(config_file: str, out_dir: str, kill_round: str | None = None) -> None:
    torch.set_num_threads(1)
    with open(config_file, "rb") as f:
        cfg = pickle.load(f)
    ranks = join_launched_ranks()
    tokenizer = load_tokenizer(cfg.model)
    runner = CountingRunner(steered_rounds(cfg, tokenizer))

    def after_call(round_index: int, call_index: int) -> None:
        if kill_round is not None and ranks.rank == 1 and round_index == int(kill_round):
            os._exit(9)

    outcome = run_filter(cfg, runner, tokenizer=tokenizer, after_call=after_call, ranks=ranks)
    calls = {"calls": runner.calls, "results": len(outcome.results)}
    (Path(out_dir) / f"rank{ranks.rank}.calls.json").write_text(json.dumps(calls))
    leave_ranks()


if __name__ == "__main__":
    main(*sys.argv[1:])
