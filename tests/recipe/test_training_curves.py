"""Training curves: scalars written by the trainer's own MetricsTracker (a SummaryWriter under
`<run>/tensorboard`) with the tags the trainer logs, read back and plotted into one PNG."""

from __future__ import annotations

import pytest
from matplotlib.image import imread

from recipe.evaluation.curves import plot_training_curves, read_scalars, reward_terms
from recipe.schema import LoggingConfig
from recipe.training.metrics import TENSORBOARD_DIR, MetricsTracker

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LOGS = LoggingConfig(tensorboard=True, save_trajectories=False, progress=False)

# Values exactly representable in float32 (TensorBoard's storage), so equality is exact.
STAGE1 = {
    0: {"dev/f1": 0.25, "dev/em": 0.125, "dev/searches": 0.0625, "dev/valid": 1.0},
    1: {
        "reward/total": 0.5625,
        "reward/retrieval": 0.125,
        "reward/format": 0.4375,
        "reward/answer": 0.0,  # w_answer = 0: a term this run never used
        "reward/f1": 0.125,
        "reward/format_valid": 0.875,
        "search/calls_per_sample": 0.375,
        "policy_loss": -0.0078125,
    },
    2: {
        "reward/total": 0.75,
        "reward/retrieval": 0.3125,
        "reward/format": 0.4375,
        "reward/answer": 0.0,
        "reward/f1": 0.25,
        "reward/format_valid": 0.875,
        "search/calls_per_sample": 1.25,
        "policy_loss": 0.015625,
        "dev/f1": 0.5,
        "dev/em": 0.5,
        "dev/searches": 1.5,
        "dev/valid": 0.96875,
    },
}
STAGE2 = {
    step: {
        "reward/total": 0.25 * step,
        "reward/f1": 0.25 * step + 0.125,
        "reward/format_penalty": -0.125,
        "reward/no_search_penalty": 0.0,
        "reward/format_valid": 0.9375,
        "search/calls_per_sample": 2.0,
    }
    for step in (1, 2, 3)
}
STAGE2[3] |= {"dev/f1": 0.625, "dev/em": 0.5625}  # the final evaluation, at the last step


def write_run(run_dir, steps: dict[int, dict[str, float]]):
    tracker = MetricsTracker(run_dir, LOGS)
    for step, scalars in steps.items():
        tracker.log(step, scalars)
    tracker.close()
    return run_dir


def expected_series(steps: dict[int, dict[str, float]]) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for step, scalars in sorted(steps.items()):
        for tag, value in scalars.items():
            series.setdefault(tag, []).append((step, value))
    return series


def test_read_scalars_returns_what_the_tracker_wrote(tmp_path):
    run = write_run(tmp_path / "stage1", STAGE1)
    assert (run / TENSORBOARD_DIR).is_dir()
    assert read_scalars(run) == expected_series(STAGE1)
    assert read_scalars(tmp_path / "missing") == {}


def test_the_reward_panel_knows_both_stages_terms():
    assert {"retrieval", "format", "answer", "f1", "format_penalty"} <= set(reward_terms())


def test_plot_writes_one_valid_png_and_notes_what_it_skipped(tmp_path):
    stage1 = write_run(tmp_path / "stage1", STAGE1)
    stage2 = write_run(tmp_path / "stage2", STAGE2)
    (tmp_path / "no_logs").mkdir()
    out = tmp_path / "report" / "training_curves.png"
    plot = plot_training_curves(
        [stage1, tmp_path / "missing", str(stage2), tmp_path / "no_logs"], out
    )
    assert plot.png == out and plot.runs == ["stage1", "stage2"]
    assert len(plot.notes) == 2
    assert "missing: no such run folder" in plot.notes[0]
    assert "no_logs: no TensorBoard scalars" in plot.notes[1]
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    height, width, _ = imread(out).shape
    assert width > 600 and height > 400
    assert sorted(p.name for p in out.parent.iterdir()) == ["training_curves.png"]  # no *.tmp
    assert read_scalars(stage2) == expected_series(STAGE2)


@pytest.mark.parametrize("present", [False, True])
def test_without_any_logs_nothing_is_written(tmp_path, present):
    run = tmp_path / "empty_run"
    if present:
        (run / TENSORBOARD_DIR).mkdir(parents=True)
    out = tmp_path / "curves.png"
    plot = plot_training_curves([run], out)
    assert plot.png is None and plot.runs == [] and not out.exists()
    assert "no plot written" in plot.notes[-1]


def test_a_resumed_run_reads_as_one_uninterrupted_run(tmp_path):
    run = write_run(tmp_path / "stage2", STAGE2)  # steps 1-3 logged, then killed
    resumed = MetricsTracker(run, LOGS, resume_step=2)  # resumes from the step-2 checkpoint
    resumed.log(3, {"reward/total": 0.875})
    resumed.close()
    assert read_scalars(run)["reward/total"] == [(1, 0.25), (2, 0.5), (3, 0.875)]
