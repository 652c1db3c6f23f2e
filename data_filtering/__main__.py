"""`python -m data_filtering [--config configs/embedded/filter.yaml] [key.path=value ...]`.

Estimates every sampled question's difficulty with the reference policy (resuming earlier work),
buckets the questions, writes each stage's file and the report, and ends with one summary line.
Under a launcher (`deepspeed --num_gpus N --no_local_rank --module data_filtering ...`) every
rank rolls out its share and rank 0 writes the files and prints the summary.
Exit status: 0 done; 2 for a bad config, unusable input, a damaged manifest or an output folder
another filter holds (one line, no traceback).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from data_filtering.config import FilterRunConfig
from data_filtering.pipeline import FilterOutcome, run_filter
from recipe.config import parse_cli
from recipe.exit_status import run_reporting

DEFAULT_CONFIG = "configs/embedded/filter.yaml"


def summary_line(outcome: FilterOutcome) -> str:
    run = outcome.run
    skipped = sum(sum(s.skipped.values()) for s in outcome.sources)
    stages = ", ".join(f"{s.stage} {len(s.keys)}" for s in outcome.selections)
    short = "; ".join(
        f"{r.stage} {r.source} {r.bucket} {r.taken}/{r.quota}"
        for s in outcome.selections
        for r in s.shortfalls
    )
    minutes, seconds = divmod(round(outcome.seconds), 60)
    return (
        f"filter: {len(outcome.questions)} questions from {len(outcome.sources)} sources "
        f"({skipped} rows skipped), {run.reused_questions} already estimated, "
        f"{run.rollouts_now} rollouts now in {minutes}m{seconds:02d}s; stages: {stages}"
        + (f" (short: {short})" if short else "")
        + f"; report {outcome.report}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_cli(FilterRunConfig, argv, default=DEFAULT_CONFIG)
    return run_reporting("data_filtering", lambda: _filter(cfg))


def _filter(cfg: FilterRunConfig) -> int:
    from recipe.training.ranks import launched_ranks

    with launched_ranks() as ranks:
        outcome = run_filter(cfg, ranks=ranks)
    if not ranks.is_main:
        return 0
    if outcome.invalidated_by:
        print(
            "data_filtering: earlier results invalidated by " + "; ".join(outcome.invalidated_by),
            file=sys.stderr,
        )
    print(summary_line(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
