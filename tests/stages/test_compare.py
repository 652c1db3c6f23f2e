"""stages.compare: two run folders side by side, paired over the questions both answered."""

from __future__ import annotations

import json
import random
from pathlib import Path

from recipe.evaluation.scoring import summarize, summarize_by_kind
from stages.compare import compare, config_differences, main


def _run(folder: Path, f1s: list[float], lr: float, searched: int) -> Path:
    folder.mkdir(parents=True)
    rows = [
        {
            "id": f"q{i}",
            "kind": "dev/bridge" if i % 2 else "dev/comparison",
            "f1": f1,
            "em": float(f1 == 1.0),
            "searched": searched,
            "valid": 1,
        }
        for i, f1 in enumerate(f1s)
    ]
    (folder / "eval_final.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {
        "run": folder.name,
        "steps": 4,
        "dev_final": summarize(rows),
        "dev_final_by_kind": summarize_by_kind(rows),
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "config.yaml").write_text(f"trainer:\n  lr: {lr}\n  steps: 4\nreward: {{w: 1}}\n")
    return folder


def test_paired_difference_and_settings_side_by_side(tmp_path):
    rng = random.Random(0)
    base = [rng.random() for _ in range(40)]
    a = _run(tmp_path / "stage2", [min(1.0, x + 0.1) for x in base], lr=0.5, searched=1)
    b = _run(tmp_path / "stage2.20260101T000000Z", base, lr=0.25, searched=0)
    assert config_differences(a, b) == [("trainer.lr", 0.5, 0.25)]
    text = compare(a, b)
    expected = sum(min(1.0, x + 0.1) - x for x in base) / len(base)
    (f1_line,) = [line for line in text.splitlines() if line.strip().startswith("f1 ")]
    cells = f1_line.split()
    assert cells[1] == f"{expected:+.4f}" and cells[-1] == "40"
    low, high = (float(c.strip("[],")) for c in cells[2:4])
    assert 0 < low <= expected <= high <= 0.1
    (searched,) = [line for line in text.splitlines() if line.strip().startswith("searched ")]
    assert searched.split()[1:4] == ["+1.0000", "[+1.0000,", "+1.0000]"]
    assert "dev/bridge" in text and "dev/comparison" in text


def test_a_folder_without_summary_is_refused(tmp_path, capsys):
    a = _run(tmp_path / "a", [0.5], lr=0.25, searched=0)
    assert main([str(a), str(tmp_path / "missing")]) == 2
    assert "missing: no summary.json" in capsys.readouterr().err
