"""The filtering report: `report.md`, the histogram PNG and `selection.json` (the same numbers).

Counts per source x bucket (and how many of the difficult ones were never solved), the histogram
of rollouts-to-first-correct per source, what each stage selected against its quotas (and
which buckets fell short), what was skipped while reading the sources, and what this run did.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from data_filtering.config import BUCKETS, FilterConfig
from data_filtering.difficulty import DifficultyResult, EstimationRun
from data_filtering.select import StageSelection, write_if_changed
from data_filtering.sources import LoadedSource
from recipe.atomic import atomic_file, write_json

REPORT_FILE = "report.md"
HISTOGRAM_FILE = "rollouts_to_first_correct.png"
SELECTION_FILE = "selection.json"
SKIP_EXAMPLES = 3


@dataclass
class SourceSummary:
    name: str
    path: str
    format: str
    rows: int
    usable: int
    sampled: int
    skipped: dict[str, int]
    skip_examples: list[str]


def summarize_source(loaded: LoadedSource, sampled: int) -> SourceSummary:
    return SourceSummary(
        loaded.name,
        loaded.path,
        loaded.format,
        loaded.rows,
        len(loaded.records),
        sampled,
        loaded.skip_counts(),
        [s.message for s in loaded.skipped[:SKIP_EXAMPLES]],
    )


def bucket_counts(
    results: Mapping[str, DifficultyResult], sources: list[str], cfg: FilterConfig
) -> dict[str, dict[str, int]]:
    """source -> {easy, medium, difficult, unsolved, questions}."""
    counts = {s: dict.fromkeys((*BUCKETS, "unsolved", "questions"), 0) for s in sources}
    for result in results.values():
        row = counts[result.source]
        row[cfg.buckets.bucket(result.first_correct)] += 1
        row["unsolved"] += int(result.first_correct is None)
        row["questions"] += 1
    return counts


def _bucket_labels(cfg: FilterConfig) -> dict[str, str]:
    b = cfg.buckets
    return {
        "easy": f"easy (< {b.easy_below})",
        "medium": f"medium ({b.easy_below}-{b.difficult_above})",
        "difficult": f"difficult (> {b.difficult_above} or none)",
    }


def bucket_table(counts: dict[str, dict[str, int]], cfg: FilterConfig) -> list[str]:
    labels = _bucket_labels(cfg)
    head = ["source", *(labels[b] for b in BUCKETS), "of which unsolved", "questions"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for source, row in counts.items():
        cells = [
            source,
            *(str(row[b]) for b in BUCKETS),
            str(row["unsolved"]),
            str(row["questions"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _selection_lines(selections: list[StageSelection]) -> list[str]:
    lines = []
    for sel in selections:
        lines += [
            "",
            f"### {sel.stage}: {len(sel.keys)} questions",
            "",
            "| source | bucket | quota | available | taken | short |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.source} | {r.bucket} | {r.quota} | {r.available} | {r.taken} | "
            f"{r.short if r.short else ''} |"
            for r in sel.rows
        ]
        for r in sel.shortfalls:
            lines.append(
                f"\n**Short:** {sel.stage} {r.source} {r.bucket} holds {r.available} questions, "
                f"quota {r.quota}: took all {r.taken}."
            )
    return lines


def _source_lines(sources: list[SourceSummary]) -> list[str]:
    lines = [
        "| source | path | format | rows | usable | sampled | skipped |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sources:
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(s.skipped.items())) or "0"
        lines.append(
            f"| {s.name} | `{s.path}` | {s.format} | {s.rows} | {s.usable} | {s.sampled} | "
            f"{skipped} |"
        )
    for s in sources:
        lines += [f"- {s.name}, skipped: {example}" for example in s.skip_examples]
    return lines


def render_report(
    cfg: FilterConfig,
    sources: list[SourceSummary],
    counts: dict[str, dict[str, int]],
    selections: list[StageSelection],
    run: EstimationRun,
    notes: list[str],
) -> str:
    lines = [
        "# Difficulty filtering",
        "",
        f"Rollouts to the first correct answer ({cfg.metric} >= {cfg.correct_at}), "
        f"{cfg.rollouts_per_round} per round, at most {cfg.max_rollouts} per question.",
        "",
        "## Sources",
        "",
        *_source_lines(sources),
        "",
        "## Buckets",
        "",
        *bucket_table(counts, cfg),
        "",
        f"![rollouts to first correct]({HISTOGRAM_FILE})",
        "",
        "## Selection",
        *_selection_lines(selections),
        "",
        "## This run",
        "",
        f"- questions: {len(run.results)}, finished before this run: {run.reused_questions}",
        f"- rollouts this run: {run.rollouts_now} in {run.engine_calls} engine calls",
        *(f"- {note}" for note in notes),
    ]
    return "\n".join(lines) + "\n"


def plot_histogram(
    path: Path, results: Mapping[str, DifficultyResult], sources: list[str], cfg: FilterConfig
) -> None:
    """One panel per source: questions by rollouts-to-first-correct, unsolved as the last bar."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a server
    import matplotlib.pyplot as plt

    cap = cfg.max_rollouts
    fig, axes = plt.subplots(1, max(1, len(sources)), figsize=(4.5 * max(1, len(sources)), 3.4))
    axes = axes if hasattr(axes, "__len__") else [axes]
    for ax, source in zip(axes, sources, strict=False):
        firsts = Counter(r.first_correct for r in results.values() if r.source == source)
        xs = list(range(1, cap + 1))
        ax.bar(xs, [firsts.get(x, 0) for x in xs], color="tab:blue", label="first correct at")
        ax.bar([cap + 1.5], [firsts.get(None, 0)], color="tab:red", label="unsolved")
        ticks = [x for x in xs if cap <= 10 or x == 1 or x % 5 == 0]  # the paper's cap is 20
        ax.set_xticks([*ticks, cap + 1.5], [*map(str, ticks), "none"])
        for edge in (cfg.buckets.easy_below - 0.5, cfg.buckets.difficult_above + 0.5):
            ax.axvline(edge, color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"{source} ({sum(firsts.values())} questions)")
        ax.set_xlabel("rollouts to first correct")
        ax.set_ylabel("questions")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_report(
    output_dir: Path,
    cfg: FilterConfig,
    sources: list[SourceSummary],
    results: Mapping[str, DifficultyResult],
    selections: list[StageSelection],
    run: EstimationRun,
    notes: list[str],
) -> Path:
    names = [s.name for s in sources]
    counts = bucket_counts(results, names, cfg)
    report = output_dir / REPORT_FILE
    write_if_changed(report, render_report(cfg, sources, counts, selections, run, notes))
    plot_histogram(output_dir / HISTOGRAM_FILE, results, names, cfg)
    selection = {
        "buckets": counts,
        "stages": {
            s.stage: {"questions": len(s.keys), "quotas": [asdict(r) for r in s.rows]}
            for s in selections
        },
        "sources": [asdict(s) for s in sources],
        "results": {k: asdict(r) for k, r in sorted(results.items())},
    }
    write_json(output_dir / SELECTION_FILE, selection)
    return report
