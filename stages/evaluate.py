"""The evaluation: baselines and trained policies, same model family, retriever, top-k and prompt.

    python -m stages.evaluate [--config configs/embedded/eval.yaml] [key.path=value ...]
    deepspeed --num_gpus N --no_local_rank --module stages.evaluate ...   (questions over N ranks)

Every method in `eval.methods` runs on every data set in `eval.datasets` (a seeded sample of
`eval.questions`, the same questions for every method), greedy unless `eval.temperature` says
otherwise, through the one rollout engine (`recipe.evaluation.runner` says what each method is, how the
engines and ranks are used and when a file is reused). Optional: one sampled evaluation per
`eval.sample_seeds` (mean +- std), an LLM judge.

Output in `eval.out_dir`: `config.yaml`, `predictions/<method>__<dataset>[__seedN].jsonl`
(question, golds, prediction, the full trajectory, scores) with the record that vouches for
each, `metrics.json`, `report.md` and the training curves PNG. A rerun (after a crash, or with
another method added) reuses the files whose settings and content check and runs only the rest.
Exit status: 0 done, 2 a bad config or a missing input.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from data_filtering.sources import load_questions
from recipe.config import parse_cli
from recipe.exit_status import run_reporting
from recipe.schema import RunConfig

# recipe.evaluation.runner, recipe.evaluation.scoring and the retriever bring torch and transformers; they are
# imported once the config is read, so that a config error is reported at once.

DEFAULT_CONFIG = "configs/embedded/eval.yaml"


def load_datasets(cfg: RunConfig) -> dict[str, list]:
    """The seeded question sample of every data set (the same for every method)."""
    from recipe.evaluation.scoring import sample_questions

    datasets = {}
    for name, files in cfg.eval.datasets.items():
        records = [r for path in files for r in load_questions(path, cfg.data.source_format)]
        n = cfg.eval.questions or len(records)
        datasets[name] = sample_questions(records, n, cfg.eval.seed)
    return datasets


def _print_results(cfg: RunConfig, metrics: dict) -> None:
    from recipe.evaluation.report import results_table

    print(results_table(metrics["summaries"]))
    for check in metrics["checks"]:
        verdict = "met" if check["met"] else "NOT met"
        print(
            f"{check['policy']} over {check['baseline']} on {check['dataset']}: "
            f"{check['difference']:+.3f} F1 [{check['ci95_low']:+.3f}, {check['ci95_high']:+.3f}]"
            f", wanted +{check['wanted']:.2f}: {verdict}"
        )
    print(f"report: {Path(cfg.eval.out_dir) / 'report.md'}")


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_cli(RunConfig, argv, default=DEFAULT_CONFIG)
    # The predictions written before a failed search or judge call are kept; a rerun reuses them.
    return run_reporting("evaluate", lambda: _evaluate(cfg))


def _evaluate(cfg: RunConfig) -> int:
    from recipe.evaluation.runner import by_model, run_evaluation
    from recipe.retrieval.client import build_retriever
    from recipe.training.ranks import launched_ranks

    with launched_ranks() as ranks:
        by_model(cfg)  # an unknown method fails before the data sets and the retriever load
        metrics = run_evaluation(cfg, build_retriever(cfg.retriever), load_datasets(cfg), ranks)
    if metrics is not None:  # rank 0
        _print_results(cfg, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
