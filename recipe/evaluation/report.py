"""The evaluation report: the table (methods x data sets x metrics), paired differences with
bootstrap intervals, the held-to checks, and `report.md`.

Pure functions of evaluation rows and summaries (`recipe.evaluation.scoring`); `stages.evaluate`
produces them. Every number in the report comes from the rows written beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from recipe.evaluation.scoring import (
    BOOTSTRAP_SAMPLES,
    paired_difference,
    summarize,
    summarize_by_kind,
)

# (column header, summary key): answer metrics under both normalisation profiles, then the
# search-agent diagnostics.
COLUMNS = (
    ("EM", "em@r1searcher"),
    ("cover-EM", "cover_em@r1searcher"),
    ("F1", "f1@r1searcher"),
    ("EM (SQuAD)", "em@squad"),
    ("F1 (SQuAD)", "f1@squad"),
    ("searches/q", "searches"),
    ("format valid", "valid"),
    ("answer in docs", "answer_in_docs"),
)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def results_table(summaries: Mapping[str, Mapping[str, dict]], judged: bool = False) -> str:
    """Markdown: one row per (method, data set), one column per metric."""
    columns = list(COLUMNS) + ([("judge", "judge")] if judged else [])
    head = "| method | data set | questions | " + " | ".join(h for h, _ in columns) + " |"
    lines = [head, "|" + "---|" * (3 + len(columns))]
    for method, by_dataset in summaries.items():
        for dataset, summary in by_dataset.items():
            cells = [_cell(summary.get(key)) for _, key in columns]
            lines.append(
                f"| {method} | {dataset} | {summary['questions']} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def sampled_table(sampled: Mapping[str, Mapping[str, Sequence[dict]]], key: str) -> str:
    """Markdown: mean +- std of `key` over the sampled evaluations (one per seed)."""
    lines = ["| method | data set | seeds | mean | std |", "|---|---|---|---|---|"]
    for method, by_dataset in sampled.items():
        for dataset, runs in by_dataset.items():
            values = [summarize(rows)[key] for rows in runs]
            mean = sum(values) / len(values)
            std = (sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)) ** 0.5
            lines.append(f"| {method} | {dataset} | {len(values)} | {mean:.3f} | {std:.3f} |")
    return "\n".join(lines)


def kind_table(rows_by_method: Mapping[str, Sequence[dict]], key: str) -> str:
    """Markdown: `key` per question kind (source/type) for each method on one data set."""
    by_kind = {m: summarize_by_kind(rows) for m, rows in rows_by_method.items()}
    kinds = sorted({k for table in by_kind.values() for k in table})
    lines = ["| kind | " + " | ".join(by_kind) + " |", "|---|" + "---|" * len(by_kind)]
    for kind in kinds:
        cells = [_cell(by_kind[m].get(kind, {}).get(key)) for m in by_kind]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goal_checks(
    rows: Mapping[str, Mapping[str, Sequence[dict]]],
    policy: str,
    goals: Mapping[str, float],
    key: str = "f1@r1searcher",
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
    bootstrap_seed: int = 0,
) -> list[dict]:
    """`policy`'s paired difference over each baseline in `goals` (method -> wanted gain)."""
    checks = []
    for baseline, wanted in goals.items():
        if policy not in rows or baseline not in rows:
            continue
        for dataset, ours in rows[policy].items():
            if dataset not in rows[baseline]:
                continue
            diff = paired_difference(
                ours, rows[baseline][dataset], key, bootstrap_seed, bootstrap_samples
            )
            checks.append(
                {
                    "policy": policy,
                    "baseline": baseline,
                    "dataset": dataset,
                    "metric": key,
                    "wanted": wanted,
                    **diff,
                    "met": diff["difference"] >= wanted,
                }
            )
    return checks


def checks_table(checks: Sequence[dict]) -> str:
    lines = [
        "| policy | over | data set | metric | gain | 95% interval | wanted | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        short = "" if c["met"] else f" (short by {c['wanted'] - c['difference']:.3f})"
        lines.append(
            f"| {c['policy']} | {c['baseline']} | {c['dataset']} | {c['metric']} | "
            f"{c['difference']:+.3f} | [{c['ci95_low']:+.3f}, {c['ci95_high']:+.3f}] | "
            f"+{c['wanted']:.2f} | {'yes' if c['met'] else 'no' + short} |"
        )
    return "\n".join(lines)


def report_markdown(
    setting: Mapping[str, object],
    summaries: Mapping[str, Mapping[str, dict]],
    rows: Mapping[str, Mapping[str, Sequence[dict]]],
    checks: Sequence[dict],
    sampled: Mapping[str, Mapping[str, Sequence[dict]]] | None = None,
    curves_png: str | None = None,
    notes: Sequence[str] = (),
) -> str:
    judged = any("judge" in s for by_ds in summaries.values() for s in by_ds.values())
    parts = ["# Evaluation", "", "## Setting", ""]
    parts += [f"- {name}: {value}" for name, value in setting.items()]
    parts += ["", "## Results (greedy)", "", results_table(summaries, judged), ""]
    if checks:
        parts += ["## Held to (paired over the same questions, bootstrap 95 % interval)", ""]
        parts += [checks_table(checks), ""]
    datasets = sorted({d for by_ds in rows.values() for d in by_ds})
    for dataset in datasets:
        per_method = {m: by_ds[dataset] for m, by_ds in rows.items() if dataset in by_ds}
        parts += [f"## F1 by question kind: {dataset}", "", kind_table(per_method, "f1"), ""]
    if sampled:
        parts += ["## Sampled evaluations (F1, mean +- std over seeds)", ""]
        parts += [sampled_table(sampled, "f1@r1searcher"), ""]
    if curves_png:
        parts += ["## Training curves", "", f"![training curves]({curves_png})", ""]
    if notes:
        parts += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(parts)
