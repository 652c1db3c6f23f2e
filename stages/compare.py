"""Two runs side by side: `python -m stages.compare RUN_A RUN_B` (or `make compare A=.. B=..`).

Prints, for two run folders (a stage, the ablation, or one moved aside when it was redone):
the settings that differ (their saved `config.yaml`), the summaries' dev metrics next to each
other, and the paired difference A - B of each headline metric over the dev questions both
answered at the end, with a bootstrap 95 % interval (question difficulty cancels in a paired
difference, so it is far tighter than the two means' own intervals), then F1 per question kind.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from recipe.evaluation.scoring import paired_difference, read_predictions

SUMMARY = "summary.json"
FINAL_EVAL = "eval_final.jsonl"
START_EVAL = "eval_step0.jsonl"
CONFIG = "config.yaml"
SHOWN = ("f1", "em", "cover_em", "searched", "searches", "valid", "answer_in_docs")
PAIRED = ("f1", "em", "searched", "valid")


def _flatten(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}{key}." if isinstance(value, dict) else prefix + key))
    return out


def config_differences(a: Path, b: Path) -> list[tuple[str, object, object]]:
    """(key path, A's value, B's value) for every setting the saved configs disagree on."""
    flat = [_flatten(yaml.safe_load((p / CONFIG).read_text()) or {}) for p in (a, b)]
    keys = sorted(flat[0].keys() | flat[1].keys())
    return [
        (k, flat[0].get(k, "-"), flat[1].get(k, "-"))
        for k in keys
        if flat[0].get(k, "-") != flat[1].get(k, "-")
    ]


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def _table(rows: list[list], header: list[str]) -> list[str]:
    cells = [header, *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]


def summary_rows(sa: dict, sb: dict) -> list[list]:
    rows = [["steps", sa.get("steps"), sb.get("steps")]]
    for part in ("dev_start", "dev_final"):
        for metric in ("questions", *SHOWN):
            a, b = sa.get(part, {}).get(metric), sb.get(part, {}).get(metric)
            if a is not None or b is not None:
                rows.append([f"{part} {metric}", a, b])
    return rows


def paired_rows(a: Path, b: Path, name: str) -> list[list]:
    ours, theirs = read_predictions(a / name), read_predictions(b / name)
    rows = []
    for metric in PAIRED:
        if ours and metric in ours[0] and theirs and metric in theirs[0]:
            d = paired_difference(ours, theirs, metric)
            interval = f"[{d['ci95_low']:+.4f}, {d['ci95_high']:+.4f}]"
            rows.append([metric, f"{d['difference']:+.4f}", interval, d["questions"]])
    return rows


def kind_rows(sa: dict, sb: dict) -> list[list]:
    ka, kb = sa.get("dev_final_by_kind", {}), sb.get("dev_final_by_kind", {})
    return [
        [kind, ka.get(kind, {}).get("f1"), kb.get(kind, {}).get("f1")]
        for kind in sorted(ka.keys() | kb.keys())
    ]


def compare(a: Path, b: Path) -> str:
    """The side-by-side report as text; a folder without a summary is an error naming it."""
    for path in (a, b):
        if not (path / SUMMARY).is_file():
            raise FileNotFoundError(f"{path}: no {SUMMARY} (not a finished run folder)")
    sa, sb = (json.loads((p / SUMMARY).read_text()) for p in (a, b))
    lines = [f"A: {a}", f"B: {b}", ""]
    if (a / CONFIG).is_file() and (b / CONFIG).is_file():
        diffs = config_differences(a, b)
        lines += ["settings that differ:"] if diffs else ["settings: identical"]
        lines += (
            [
                "  " + row
                for row in _table([[k, repr(x), repr(y)] for k, x, y in diffs], ["key", "A", "B"])
            ]
            if diffs
            else []
        )
        lines.append("")
    lines += _table(summary_rows(sa, sb), ["summary", "A", "B"]) + [""]
    for name in (FINAL_EVAL, START_EVAL):
        if (a / name).is_file() and (b / name).is_file():
            rows = paired_rows(a, b, name)
            lines.append(f"paired A - B over the questions of {name} both hold (95 % bootstrap):")
            lines += ["  " + r for r in _table(rows, ["metric", "A - B", "interval", "questions"])]
            lines.append("")
            break
    else:
        lines += [f"no paired difference: the two runs do not both hold {FINAL_EVAL}", ""]
    kinds = kind_rows(sa, sb)
    if kinds:
        lines += _table(kinds, ["dev_final f1 by kind", "A", "B"])
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stages.compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("a", type=Path, help="run folder A (e.g. runs/stage2)")
    parser.add_argument("b", type=Path, help="run folder B (e.g. runs/stage2.20260101T000000Z)")
    args = parser.parse_args(argv)
    try:
        print(compare(args.a, args.b), end="")
    except (FileNotFoundError, ValueError) as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
