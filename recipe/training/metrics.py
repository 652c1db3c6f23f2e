"""The run's metrics: TensorBoard scalars, `metrics.jsonl`, optionally wandb, one console line
per step, and every step's trajectories in `trajectories.jsonl`.

`logging.log_every` thins the training steps' scalars; the dev evaluations are logged whatever
their step (`log(..., always=True)`): they are few, and the final one is what a run is read by.

On resume, lines of steps after the checkpoint (written before the kill) are dropped from both
jsonl files and TensorBoard is told to purge them (`SummaryWriter(purge_step=...)`), so the
logs of a resumed run read as those of one uninterrupted run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from recipe.atomic import write_jsonl
from recipe.rollout import Trajectory, format_trajectory
from recipe.schema import LoggingConfig
from recipe.training.wandb_run import open_wandb_run
from rewards.stage import RewardResult

METRICS_FILE = "metrics.jsonl"
TRAJECTORIES_FILE = "trajectories.jsonl"
TENSORBOARD_DIR = "tensorboard"
INSERTED_OPEN, INSERTED_CLOSE = "\u27e6", "\u27e7"  # marks around inserted spans in the log

# The console line: (metric, label, format).
CONSOLE = (
    ("reward/total", "reward", "{:+.3f}"),
    ("reward/format_valid", "valid", "{:.2f}"),
    ("search/calls_per_sample", "searches", "{:.2f}"),
    ("reward/f1", "f1", "{:.3f}"),
    ("response_length/mean", "len", "{:.0f}"),
    ("policy_loss", "loss", "{:+.4f}"),
    ("kl", "kl", "{:.4f}"),
    ("grad_norm", "gnorm", "{:.3f}"),
    ("timing/step", "s", "{:.1f}"),
)


def _truncate_jsonl(path: Path, last_step: int) -> None:
    if not path.is_file():
        return
    kept = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the kill
            if row.get("step", 0) <= last_step:
                kept.append(row)
    write_jsonl(path, kept)


def console_line(step: int, total: int, scalars: dict[str, float]) -> str:
    parts = [f"step {step}/{total}"]
    for key, label, fmt in CONSOLE:
        if key in scalars:
            parts.append(f"{label} {fmt.format(scalars[key])}")
    return " | ".join(parts)


class MetricsTracker:
    def __init__(
        self, run_dir: str | Path, cfg: LoggingConfig, resume_step: int = 0, enabled: bool = True
    ):
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.enabled = enabled  # False on every rank but 0: one rank writes the logs
        self.writer = None
        self.wandb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for name in (METRICS_FILE, TRAJECTORIES_FILE):
            _truncate_jsonl(self.run_dir / name, resume_step)
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                str(self.run_dir / TENSORBOARD_DIR), purge_step=resume_step + 1
            )
        if cfg.wandb:
            self.wandb = open_wandb_run(self.run_dir, cfg, resume_step)

    def log(self, step: int, scalars: dict[str, float], always: bool = False) -> None:
        """Write `scalars` at `step`: every `logging.log_every`-th step, or at once with `always`."""
        if not self.enabled or (step % self.cfg.log_every and not always):
            return
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps({"step": step, **scalars}) + "\n")

    def log_trajectories(
        self,
        step: int,
        trajectories: Sequence[Trajectory],
        results: Sequence[RewardResult],
        tokenizer,
    ) -> None:
        if not self.enabled or not self.cfg.save_trajectories:
            return
        with open(self.run_dir / TRAJECTORIES_FILE, "a") as f:
            for t, r in zip(trajectories, results, strict=True):
                row = {
                    "step": step,
                    "id": t.record_id,
                    "sample": t.sample_index,
                    "question": t.question,
                    "golds": t.golds,
                    "text": format_trajectory(t, tokenizer, INSERTED_OPEN, INSERTED_CLOSE),
                    "reward": r.total,
                    "parts": r.parts,
                    "stop_reason": t.stop_reason,
                    "queries": t.queries,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
