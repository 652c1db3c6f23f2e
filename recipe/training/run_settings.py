"""The settings a run must keep across resumes, saved when it starts and compared at each resume.

A resume that trained on other questions, another model or another optimizer setting than the
steps before it would mix two runs under one name, so `run_settings.json` records, at the run's
first start, what the steps depend on: the model, the training questions (files, count and a
digest of their text), the retriever's corpus and index, the rollout shape, the reward, the
algorithm and the optimizer. A resume under other values is refused with one line naming each
difference, unless `trainer.resume_allow_changes` names the keys (or holds `all`); each allowed
change is appended to `resumes.jsonl`, and later resumes compare with the settings as changed.
Left out on purpose: what only extends or observes a run (steps, save and log cadence,
evaluation, the run's name), the vLLM engine's memory knobs and batch sizes, which change no
sampled token's distribution.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

from recipe.atomic import write_json
from recipe.config import FieldError
from recipe.exit_status import BAD_INPUT
from recipe.precision import autocast_enabled, default_device, resolve_dtype

SETTINGS_FILE = "run_settings.json"
RESUMES_FILE = "resumes.jsonl"
ALLOW_ALL = "all"

RETRIEVER_KEYS = ("kind", "corpus", "encoder", "index_dir", "topk")
ROLLOUT_LEFT_OUT = ("backend", "batch_size", "vllm_export_dir", "gpu_memory_utilization")
TRAINER_KEYS = (
    "lr",
    "warmup_steps",
    "lr_decay",
    "weight_decay",
    "prompts_per_step",
    "updates_per_rollout",
    "ppo_epochs",
    "old_logprobs",
    "max_grad_norm",
    "frozen_layers",
    "seed",
    "deepspeed_config",
)


class ResumeRefused(RuntimeError):
    """A resume under settings that differ from the run's (the stages exit 2 on it)."""

    exit_status = BAD_INPUT


def _plain(value):
    return json.loads(json.dumps(value))


def questions_digest(records: Sequence) -> str:
    digest = hashlib.sha256()
    for r in records:
        row = [getattr(r, "question", None), list(getattr(r, "answers", None) or [])]
        digest.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def run_settings(cfg, records: Sequence) -> dict[str, object]:
    """Dotted key -> value of every setting that must not change across a resume."""
    out: dict[str, object] = {}

    def add(section: str, values: dict) -> None:
        out.update({f"{section}.{k}": _plain(v) for k, v in values.items()})

    add("model", {k: getattr(cfg.model, k) for k in ("path", "gguf_file", "prompt_style")})
    # `auto` resolved: a run resumed on a machine with another native format samples and
    # updates in another precision.
    device = default_device()
    add("model", {"dtype": resolve_dtype(cfg.model.dtype, device)})
    add("trainer", {"autocast_bf16": autocast_enabled(cfg.trainer.autocast_bf16, device)})
    add("data", {k: getattr(cfg.data, k) for k in ("train_files", "source_format")})
    add("data", {"questions": len(records), "questions_sha256": questions_digest(records)})
    add("tags", dataclasses.asdict(cfg.tags))
    add("retriever", {k: getattr(cfg.retriever, k) for k in RETRIEVER_KEYS})
    rollout = dataclasses.asdict(cfg.rollout)
    add("rollout", {k: v for k, v in rollout.items() if not _left_out(k)})
    add("reward", dataclasses.asdict(cfg.reward))
    add("algo", dataclasses.asdict(cfg.algo))
    add("trainer", {k: getattr(cfg.trainer, k) for k in TRAINER_KEYS})
    return out


def _left_out(rollout_key: str) -> bool:
    return rollout_key in ROLLOUT_LEFT_OUT or rollout_key.startswith("vllm_")


def check_allow_list(allowed: Sequence[str], keys: Sequence[str]) -> None:
    unknown = [a for a in allowed if a != ALLOW_ALL and a not in keys]
    if unknown:
        raise FieldError(
            "trainer.resume_allow_changes",
            f"{', '.join(unknown)}: not a setting a resume compares; use {ALLOW_ALL} or some of "
            + ", ".join(keys),
        )


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


class RunSettings:
    """`run_settings.json` and `resumes.jsonl` of one run folder."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / SETTINGS_FILE
        self.resumes = Path(run_dir) / RESUMES_FILE

    def exists(self) -> bool:
        return self.path.is_file()

    def write(self, settings: dict) -> None:
        write_json(self.path, settings, fsync=True, sort_keys=True)

    def effective(self) -> dict:
        """The start's settings with every allowed change since applied."""
        try:
            settings = json.loads(self.path.read_text())
            if not isinstance(settings, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            raise ResumeRefused(
                f"{self.path} is not a run's settings; move the run folder aside or use another "
                "trainer.run_name"
            ) from None
        if self.resumes.is_file():
            for line in self.resumes.read_text().splitlines():
                if line.strip():
                    settings.update({k: new for k, (_, new) in json.loads(line)["changes"].items()})
        return settings

    def check(self, now: dict, allowed: Sequence[str], record: bool = True) -> dict:
        """Refuses a resume under differing settings the allow list does not cover; records
        the changes it allows (when `record`). Returns them (key -> [run's value, new value])."""
        before = self.effective()
        # A key the run never recorded (it started before that setting was compared) is new.
        changes = {k: [before[k], v] for k, v in now.items() if k in before and before[k] != v}
        refused = [k for k in changes if ALLOW_ALL not in allowed and k not in allowed]
        if refused:
            listed = "; ".join(
                f"{k}: {_short(changes[k][0])} -> {_short(changes[k][1])}" for k in refused
            )
            raise ResumeRefused(
                f"resume refused, settings differ from the run's ({self.path}): {listed}; "
                f"resume with the run's values, list the keys in "
                f"trainer.resume_allow_changes, or use another trainer.run_name"
            )
        if changes and record:
            row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "changes": changes}
            with open(self.resumes, "a") as f:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return changes
