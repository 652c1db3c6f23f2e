"""stages.curriculum: two stages against one, paired over questions, pooled over seeds."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from stages.curriculum import (
    default_replicates,
    differences,
    load_replicate,
    main,
    pooled_difference,
    report,
    shared_questions,
)

QUESTIONS = 60
KINDS = ("hotpotqa/bridge", "2wiki/comparison")


def _run(folder: Path, f1s: list[float], steps: int, searches: list[float], dev_searched: float):
    folder.mkdir(parents=True)
    rows = [
        {
            "id": f"q{i}",
            "kind": KINDS[i % 2],
            "f1": f1,
            "em": float(f1 == 1.0),
            "searched": 1.0,
            "valid": 1.0,
        }
        for i, f1 in enumerate(f1s)
    ]
    (folder / "eval_final.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "summary.json").write_text(json.dumps({"run": folder.name, "steps": steps}))
    metrics = [{"step": s + 1, "search/calls_per_sample": v} for s, v in enumerate(searches)]
    metrics.append({"step": steps, "dev/f1": float(np.mean(f1s)), "dev/searched": dev_searched})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))


def _replicate(root: Path, seed: int, lead: float) -> Path:
    """Seeded dev F1s: the curriculum ahead of the ablation by `lead` on bridge questions only."""
    rng = random.Random(seed)
    base = [rng.random() * 0.8 for _ in range(QUESTIONS)]
    two = [x + (lead if i % 2 == 0 else 0.0) for i, x in enumerate(base)]
    _run(root / "stage1", [x * 0.5 for x in base], 2, [0.5, 1.0], dev_searched=0.9)
    _run(root / "stage2", two, 3, [1.5, 1.75, 2.0], dev_searched=1.0)
    _run(root / "ablation", base, 5, [0.25, 0.25, 0.5, 0.5, 0.75], dev_searched=0.5)
    return root


def test_pooled_difference_is_the_mean_of_the_seeds_with_both_intervals(tmp_path):
    seeds = [_replicate(tmp_path / "runs", 0, 0.2), _replicate(tmp_path / "runs/seed1", 1, 0.1)]
    replicates = [load_replicate(root) for root in seeds]
    ids = shared_questions(replicates)
    diffs = differences(replicates, ids, "f1")
    assert diffs.shape == (2, QUESTIONS)
    np.testing.assert_allclose(diffs.mean(axis=1), [0.1, 0.05])  # the lead on half the questions
    pooled = pooled_difference(diffs)
    assert abs(pooled["difference"] - 0.075) < 1e-9
    low, high = pooled["questions"]
    assert 0 < low < 0.075 < high < 0.2
    # Resampling the seeds too spreads the interval over the two seeds' disagreement.
    s_low, s_high = pooled["seeds_and_questions"]
    assert s_low < low and s_high > high


def test_identical_seeds_give_the_same_interval_either_way(tmp_path):
    # Seeds that agree question by question leave nothing for the seed resampling to add.
    seeds = [_replicate(tmp_path / "a", 3, 0.2), _replicate(tmp_path / "b", 3, 0.2)]
    pooled = pooled_difference(differences(*_loaded(seeds), "f1"))
    np.testing.assert_allclose(pooled["questions"], pooled["seeds_and_questions"])


def _loaded(roots):
    replicates = [load_replicate(root) for root in roots]
    return replicates, shared_questions(replicates)


def test_report_lists_seeds_kinds_and_the_search_rate_on_one_step_axis(tmp_path):
    seeds = [_replicate(tmp_path / "runs", 0, 0.2), _replicate(tmp_path / "runs/seed1", 1, 0.1)]
    text = report(seeds)
    (f1,) = [line for line in text.splitlines() if line.startswith("| f1 |")]
    assert f1.split("|")[2:5] == [" +0.100 ", " +0.050 ", " **+0.075** "]
    (searched,) = [line for line in text.splitlines() if line.startswith("| searched |")]
    assert "+0.000" in searched
    kinds = {line.split("|")[1].strip(): line for line in text.splitlines() if "/" in line}
    assert kinds["hotpotqa/bridge"].split("|")[5].strip() == "+0.150"
    assert kinds["2wiki/comparison"].split("|")[5].strip() == "+0.000"
    rows = {
        int(line.split("|")[1]): [c.strip() for c in line.split("|")[2:6]]
        for line in text.splitlines()
        if line.startswith("| ") and line.split("|")[1].strip().isdigit()
    }
    # Stage 2's first step is the curriculum's third (stage 1 ran 2); its dev point at 2 + 3.
    assert rows[1] == ["0.50", "0.25", "-", "-"]
    assert rows[3] == ["1.50", "0.50", "-", "-"]
    assert rows[2][2] == "0.90" and rows[5] == ["2.00", "0.75", "1.00", "0.50"]


def test_default_replicates_are_runs_and_its_seed_folders(tmp_path):
    runs = tmp_path / "runs"
    _replicate(runs, 0, 0.1)
    _replicate(runs / "seed2", 2, 0.1)
    (runs / "seed3" / "stage2").mkdir(parents=True)  # an unfinished replicate is not picked up
    assert default_replicates(runs) == [runs, runs / "seed2"]


def test_a_replicate_without_its_ablation_is_refused_by_name(tmp_path, capsys):
    root = _replicate(tmp_path / "runs", 0, 0.1)
    (root / "ablation" / "summary.json").unlink()
    assert main([str(root)]) == 2
    err = capsys.readouterr().err
    assert "ablation: no summary.json" in err and err.count("\n") == 1


def test_no_replicate_found_is_one_line(tmp_path, capsys):
    assert main(["--runs", str(tmp_path / "runs")]) == 2
    assert "no replicate" in capsys.readouterr().err
