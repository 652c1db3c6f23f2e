"""Training curves of one or more runs (stage 1, then stage 2), read from their TensorBoard logs
and drawn into one PNG for the evaluation report.

`read_scalars(run_dir)` reads every scalar the trainer's `MetricsTracker` wrote under
`<run_dir>/tensorboard` (TensorBoard's EventAccumulator, all points kept, purged steps of a
resumed run dropped). `plot_training_curves(run_dirs, out_png)` draws four panels, the runs laid
end to end on one step axis (each run shaded and named, in the order given):

- reward: `reward/total` and the reward's terms (`reward/retrieval`, `reward/format`,
  `reward/f1`, `reward/format_penalty`, ...: the terms of every registered stage reward, so a
  new term shows up without touching this file); a term that is 0 throughout a run is left out.
  Tags carry no stage, so a name that is a term of one reward is drawn in every run that logs it
  (`reward/f1` is stage 2's answer term and stage 1's diagnostic of the same F1);
- searches per sample: `search/calls_per_sample`, with the dev evaluations' `dev/searches`;
- format-valid rate: `reward/format_valid`, with `dev/valid`;
- dev F1 at the evaluation points: `dev/f1` (and `dev/em`).

A run folder that is missing, holds no TensorBoard logs, or cannot be read is skipped with a
note in the returned `CurvesPlot`, never an error: the report says what is missing instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from matplotlib.figure import Figure

from recipe.atomic import atomic_file
from recipe.training.metrics import TENSORBOARD_DIR
from rewards.spec import RewardConfig
from rewards.stage import REWARDS, build_reward

Series = list[tuple[int, float]]  # (step, value), by step


@dataclass(frozen=True)
class Curve:
    tag: str
    label: str
    points_only: bool = False  # evaluation points, drawn as markers
    hide_if_zero: bool = False  # a reward term the run's reward does not use stays at 0


@dataclass(frozen=True)
class Panel:
    title: str
    curves: tuple[Curve, ...]
    ylabel: str


@dataclass
class CurvesPlot:
    """What `plot_training_curves` drew: the PNG (None when no run had logs), the runs in it,
    and a note for every run it skipped."""

    png: Path | None
    runs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def reward_terms() -> tuple[str, ...]:
    """The names of the terms that sum to the reward, over every registered stage reward."""
    names: dict[str, None] = {}
    for name in sorted(REWARDS):
        reward = build_reward(replace(RewardConfig(), name=name))
        names |= dict.fromkeys(reward("", []).terms)
    return tuple(names)


def panels() -> tuple[Panel, ...]:
    reward_curves = (Curve("reward/total", "total"),) + tuple(
        Curve(f"reward/{term}", term, hide_if_zero=True) for term in reward_terms()
    )
    return (
        Panel("reward (total and terms)", reward_curves, "mean per sample"),
        Panel(
            "searches per sample",
            (
                Curve("search/calls_per_sample", "training rollouts"),
                Curve("dev/searches", "dev evaluation", points_only=True),
            ),
            "searches",
        ),
        Panel(
            "format-valid rate",
            (
                Curve("reward/format_valid", "training rollouts"),
                Curve("dev/valid", "dev evaluation", points_only=True),
            ),
            "fraction valid",
        ),
        Panel(
            "dev F1 (evaluation points)",
            (Curve("dev/f1", "F1", points_only=True), Curve("dev/em", "EM", points_only=True)),
            "score",
        ),
    )


def read_scalars(run_dir: str | Path) -> dict[str, Series]:
    """Every scalar tag of the run's TensorBoard logs, as (step, value) by step; {} when the
    run has none."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = Path(run_dir) / TENSORBOARD_DIR
    if not logs.is_dir():
        return {}
    accumulator = EventAccumulator(str(logs), size_guidance={"scalars": 0})  # 0: keep all
    accumulator.Reload()
    return {
        tag: sorted((event.step, float(event.value)) for event in accumulator.Scalars(tag))
        for tag in accumulator.Tags()["scalars"]
    }


def _readable_runs(run_dirs: Sequence[Path | str]) -> tuple[list[tuple[str, dict]], list[str]]:
    """(run name, scalars) of each run with logs, and a note for each without."""
    runs, notes = [], []
    for run_dir in map(Path, run_dirs):
        if not run_dir.is_dir():
            notes.append(f"{run_dir}: no such run folder; skipped")
            continue
        try:
            scalars = read_scalars(run_dir)
        except Exception as error:  # a corrupt event file must not sink the report
            notes.append(f"{run_dir}: TensorBoard logs unreadable ({error!r}); skipped")
            continue
        if not scalars:
            notes.append(f"{run_dir}: no TensorBoard scalars under {TENSORBOARD_DIR}/; skipped")
            continue
        runs.append((run_dir.name, scalars))
    return runs, notes


def _last_step(scalars: dict[str, Series]) -> int:
    return max(step for series in scalars.values() for step, _ in series)


def _draw_panel(axes, panel: Panel, runs: list[tuple[str, dict]], offsets: list[int]) -> None:
    colors = {curve.tag: f"C{i % 10}" for i, curve in enumerate(panel.curves)}
    for (_, scalars), offset in zip(runs, offsets, strict=True):
        for curve in panel.curves:
            series = scalars.get(curve.tag, [])
            if not series or (curve.hide_if_zero and not any(v for _, v in series)):
                continue
            steps = [offset + step for step, _ in series]
            values = [value for _, value in series]
            style = {"marker": "o", "linestyle": ":"} if curve.points_only else {"marker": "."}
            axes.plot(steps, values, color=colors[curve.tag], label=curve.label, **style)
    _shade_runs(axes, runs, offsets)
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))  # one legend entry per curve, not per run
    if unique:
        axes.legend(unique.values(), unique.keys(), fontsize="small")
    else:
        axes.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axes.transAxes)
    axes.set_title(panel.title)
    axes.set_ylabel(panel.ylabel)
    axes.grid(alpha=0.3)


def _shade_runs(axes, runs: list[tuple[str, dict]], offsets: list[int]) -> None:
    for i, ((_, scalars), offset) in enumerate(zip(runs, offsets, strict=True)):
        if i % 2:  # every other run shaded, a dashed line where each run starts
            axes.axvspan(offset, offset + _last_step(scalars), color="0.92", zorder=0)
        if i:
            axes.axvline(offset, color="0.5", linestyle="--", linewidth=1)


def _step_axis_label(runs: list[tuple[str, dict]], offsets: list[int]) -> str:
    spans = [
        f"{name} {offset + 1}\u2013{offset + _last_step(scalars)}"
        for (name, scalars), offset in zip(runs, offsets, strict=True)
    ]
    return "step, runs end to end (shaded every other run): " + " | ".join(spans)


def plot_training_curves(run_dirs: Sequence[Path | str], out_png: Path | str) -> CurvesPlot:
    """Draw the runs' curves (see the module docstring) into `out_png`, written atomically."""
    runs, notes = _readable_runs(run_dirs)
    if not runs:
        return CurvesPlot(None, [], notes + ["no run had TensorBoard scalars; no plot written"])
    offsets, start = [], 0
    for _, scalars in runs:  # each run starts where the previous one ended
        offsets.append(start)
        start += _last_step(scalars)
    figure = Figure(figsize=(13, 8.5), layout="constrained")
    grid = figure.subplots(2, 2, sharex=True)
    for axes, panel in zip(grid.flat, panels(), strict=True):
        _draw_panel(axes, panel, runs, offsets)
    for axes in grid[-1]:
        axes.set_xlabel(_step_axis_label(runs, offsets))
    figure.suptitle("training curves: " + " \u2192 ".join(name for name, _ in runs))
    out_png = Path(out_png)
    with atomic_file(out_png) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return CurvesPlot(out_png, [name for name, _ in runs], notes)
