"""The curriculum at an equal budget: two stages against stage 2's reward alone, over seeds.

    python -m stages.curriculum [REPLICATE ...]        (make curriculum)

A replicate is a folder holding the three run folders of one seed: `stage1/`, `stage2/` (the
two-stage curriculum) and `ablation/` (stage 2's reward from the base model for stage 1 + stage
2's steps, samples and questions). `runs/` is seed 0 (`make stage2 && make ablation`),
`runs/seed<k>/` seed k (`make replicate SEED=k`); without arguments every one of those that
exists is read. Printed:

- the paired difference two stages - one stage of each headline metric over the dev questions
  every final evaluation answered, per seed and pooled (the mean over seeds). Every run
  evaluates the same seeded dev sample, so the pooled interval resamples questions once for all
  seeds (a question's difficulty cancels in each seed's difference); a second interval resamples
  the seeds as well (a two-level bootstrap: it carries the seed-to-seed spread, and with two or
  three seeds it is as wide as their disagreement);
- F1 per question kind, each arm pooled over seeds, with the pooled paired difference;
- searches per training sample along both runs, step by step (the curriculum's stage 2
  continues stage 1's step count), the mean over seeds, and the dev evaluations' search rate
  where a run evaluated.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recipe.evaluation.scoring import BOOTSTRAP_SAMPLES, read_predictions
from recipe.training.metrics import METRICS_FILE

TWO_STAGES = ("stage1", "stage2")
ONE_STAGE = "ablation"
FINAL_EVAL, SUMMARY = "eval_final.jsonl", "summary.json"
PAIRED = ("f1", "em", "searched", "valid")
SEARCHES, DEV_SEARCHED = "search/calls_per_sample", "dev/searched"
REPLICATE_GLOB = "seed*"


@dataclass(frozen=True)
class Replicate:
    """One seed's final dev evaluations and search curves (step -> value)."""

    root: Path
    two_stage: dict[str, dict]  # question id -> prediction row of stage 2's final evaluation
    one_stage: dict[str, dict]
    two_stage_searches: dict[int, float]
    one_stage_searches: dict[int, float]
    two_stage_dev_searched: dict[int, float]
    one_stage_dev_searched: dict[int, float]


def _finished(run: Path) -> Path:
    if not (run / SUMMARY).is_file() or not (run / FINAL_EVAL).is_file():
        raise FileNotFoundError(f"{run}: no {SUMMARY} and {FINAL_EVAL} (not a finished run)")
    return run


def _curve(run: Path, key: str, offset: int = 0) -> dict[int, float]:
    path = run / METRICS_FILE
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {int(r["step"]) + offset: float(r[key]) for r in rows if key in r}


def load_replicate(root: Path) -> Replicate:
    stage1, stage2 = (root / name for name in TWO_STAGES)
    ablation = _finished(root / ONE_STAGE)
    _finished(stage2)
    # Stage 2's steps follow stage 1's on one axis: its step s is the curriculum's s + stage 1's.
    offset = int(json.loads((stage1 / SUMMARY).read_text())["steps"]) if stage1.is_dir() else 0
    return Replicate(
        root=root,
        two_stage={r["id"]: r for r in read_predictions(stage2 / FINAL_EVAL)},
        one_stage={r["id"]: r for r in read_predictions(ablation / FINAL_EVAL)},
        two_stage_searches={**_curve(stage1, SEARCHES), **_curve(stage2, SEARCHES, offset)},
        one_stage_searches=_curve(ablation, SEARCHES),
        two_stage_dev_searched={
            **_curve(stage1, DEV_SEARCHED),
            **_curve(stage2, DEV_SEARCHED, offset),
        },
        one_stage_dev_searched=_curve(ablation, DEV_SEARCHED),
    )


def shared_questions(replicates: Sequence[Replicate]) -> list[str]:
    """The dev questions every final evaluation answered, in a fixed order."""
    ids = set.intersection(*(set(r.two_stage) & set(r.one_stage) for r in replicates))
    if not ids:
        raise ValueError("the final evaluations share no dev question")
    return sorted(ids)


def differences(replicates: Sequence[Replicate], ids: Sequence[str], metric: str) -> np.ndarray:
    """[seeds, questions] of two stages - one stage on `metric`."""
    return np.array(
        [
            [float(r.two_stage[q][metric]) - float(r.one_stage[q][metric]) for q in ids]
            for r in replicates
        ]
    )


def pooled_difference(diffs: np.ndarray, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> dict:
    """Mean over seeds of each seed's mean difference, with two percentile 95 % intervals:
    questions resampled (the same picks in every seed), and seeds then questions resampled."""
    n_seeds, n_questions = diffs.shape
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_questions, size=(samples, n_questions))
    per_seed = diffs[:, picks].mean(axis=2).T  # [samples, seeds]
    seed_picks = rng.integers(0, n_seeds, size=(samples, n_seeds))
    both = np.take_along_axis(per_seed, seed_picks, axis=1).mean(axis=1)
    q_low, q_high = np.percentile(per_seed.mean(axis=1), [2.5, 97.5])
    s_low, s_high = np.percentile(both, [2.5, 97.5])
    return {
        "difference": float(diffs.mean()),
        "questions": (float(q_low), float(q_high)),
        "seeds_and_questions": (float(s_low), float(s_high)),
    }


def _interval(pair: tuple[float, float]) -> str:
    return f"[{pair[0]:+.3f}, {pair[1]:+.3f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def difference_section(replicates: Sequence[Replicate], ids: Sequence[str]) -> list[str]:
    header = ["metric", *(str(r.root) for r in replicates), "pooled", "95 % questions"]
    header.append("95 % seeds + questions")
    rows = []
    for metric in PAIRED:
        first = [row for r in replicates for row in (r.two_stage[ids[0]], r.one_stage[ids[0]])]
        if not all(metric in row for row in first):
            continue
        diffs = differences(replicates, ids, metric)
        pooled = pooled_difference(diffs)
        rows.append(
            [
                metric,
                *(f"{d:+.3f}" for d in diffs.mean(axis=1)),
                f"**{pooled['difference']:+.3f}**",
                _interval(pooled["questions"]),
                _interval(pooled["seeds_and_questions"]),
            ]
        )
    title = f"Two stages - one stage, paired over {len(ids)} dev questions:"
    return [title, "", *_table(header, rows)]


def kind_section(replicates: Sequence[Replicate], ids: Sequence[str]) -> list[str]:
    kinds = sorted({replicates[0].two_stage[q].get("kind", "?") for q in ids})
    rows = []
    for kind in kinds:
        chosen = [q for q in ids if replicates[0].two_stage[q].get("kind", "?") == kind]
        two = np.mean([[r.two_stage[q]["f1"] for q in chosen] for r in replicates])
        one = np.mean([[r.one_stage[q]["f1"] for q in chosen] for r in replicates])
        pooled = pooled_difference(differences(replicates, chosen, "f1"))
        rows.append(
            [
                kind,
                str(len(chosen)),
                f"{two:.3f}",
                f"{one:.3f}",
                f"{pooled['difference']:+.3f}",
                _interval(pooled["questions"]),
            ]
        )
    header = ["kind", "questions", "two stages F1", "one stage F1", "difference", "95 % questions"]
    return ["F1 per question kind, pooled over seeds:", "", *_table(header, rows)]


def _mean_at(curves: Sequence[dict[int, float]], step: int) -> str:
    values = [c[step] for c in curves if step in c]
    return f"{np.mean(values):.2f}" if values else "-"


def search_section(replicates: Sequence[Replicate]) -> list[str]:
    series = [
        [r.two_stage_searches for r in replicates],
        [r.one_stage_searches for r in replicates],
        [r.two_stage_dev_searched for r in replicates],
        [r.one_stage_dev_searched for r in replicates],
    ]
    steps = sorted({s for curves in series for c in curves for s in c})
    rows = [[str(s), *(_mean_at(curves, s) for curves in series)] for s in steps]
    header = ["step", "two stages", "one stage", "two stages dev", "one stage dev"]
    title = "Searches per training sample along the runs, and the dev search rate, mean over seeds:"
    return [title, "", *_table(header, rows)]


def report(roots: Sequence[Path]) -> str:
    """The whole report as markdown; a replicate without finished runs is an error naming it."""
    if not roots:
        raise FileNotFoundError("no replicate given and none found (runs/, runs/seed*/)")
    replicates = [load_replicate(root) for root in roots]
    ids = shared_questions(replicates)
    sections = [
        difference_section(replicates, ids),
        kind_section(replicates, ids),
        search_section(replicates),
    ]
    return "\n\n".join("\n".join(s) for s in sections) + "\n"


def default_replicates(runs: Path) -> list[Path]:
    candidates = [runs, *sorted(runs.glob(REPLICATE_GLOB))]
    return [p for p in candidates if (p / ONE_STAGE / SUMMARY).is_file()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stages.curriculum", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "replicates", type=Path, nargs="*", help="folders holding stage1/ stage2/ ablation/"
    )
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where to look by default")
    args = parser.parse_args(argv)
    try:
        print(report(args.replicates or default_replicates(args.runs)), end="")
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"curriculum: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
