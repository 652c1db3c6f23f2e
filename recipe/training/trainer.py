"""The RL trainer: Reinforce++ (or any registered estimator) over search-interleaved rollouts.

One step, top to bottom (`Trainer.step`):
1. rollout: `trainer.prompts_per_step` questions x `rollout.samples_per_prompt` trajectories
   from the generation backend (`recipe.rollout`);
2. reward: the stage reward of each response against the golds that travel with it;
3. reference log-probs from a frozen copy of the initial policy, built only when
   `algo.kl_coef` is not 0;
4. update (`recipe.training.update`): behaviour log-probs, advantages over the whole step
   (`recipe.algorithms` registry), then `trainer.ppo_epochs` x `trainer.updates_per_rollout`
   optimizer steps through the DeepSpeed engine, micro-batched by tokens;
5. sync: the backend samples from the new weights (`GenerationBackend.load_weights`);
6. logs: TensorBoard, `metrics.jsonl`, the trajectories, a console line; a checkpoint every
   `trainer.save_every` steps.

Several ranks (`recipe.training.ranks`): each rolls out its block of the step's questions, the
trajectories are gathered so every rank collates the same batch and computes the same
advantages, each trains on its own rows, and the gradients are summed over ranks before one update
(`recipe.training.optimizer_step`: by the trainer under ZeRO stage 0, by DeepSpeed under 1-2);
rank 0 writes the logs, the exports and the checkpoints' own files.

Weights for generation. The vLLM backend holds its own engine weights and takes the training
module's parameters by reference at each sync: the trainer keeps no other copy of the policy.
The HF backend samples from a generation copy in `model.dtype` (bf16 by default) while the
trainer keeps fp32 master weights on CPU: bf16 weights would round most updates at lr 1e-5 away,
and bf16 decoding is about 3x faster than fp32 on a CPU (README, measurements). Retrieved tokens
are never targets (action mask 0).
"""

from __future__ import annotations

import copy
import dataclasses
import random
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from recipe.atomic import write_json, write_jsonl
from recipe.config import save_config
from recipe.evaluation.scoring import (
    evaluate,
    paired_difference,
    read_predictions,
    sample_questions,
    summarize,
    summarize_by_kind,
)
from recipe.generation import build_backend
from recipe.generation.base import GenerationBackend
from recipe.precision import autocast_enabled, torch_dtype
from recipe.retrieval.base import Retriever
from recipe.rollout import build_rollout_engine
from recipe.run_lock import folder_lock
from recipe.schema import RunConfig
from recipe.training.batch import TrainBatch, collate
from recipe.training.checkpoint import CheckpointStore, export_hf
from recipe.training.disk_full import DiskFull, WriteFailed, naming_a_full_disk
from recipe.training.engine import build_engine
from recipe.training.errors import TrainingError
from recipe.training.logprobs import sequence_logprobs
from recipe.training.metrics import MetricsTracker, console_line
from recipe.training.monitors import rollout_metrics
from recipe.training.optim import freeze_lower
from recipe.training.optimizer_step import OptimizerStep
from recipe.training.ranks import current_ranks, threads_per_rank
from recipe.training.resume import load_resume_state
from recipe.training.run_settings import RunSettings, check_allow_list, run_settings
from recipe.training.sampler import QuestionSampler
from recipe.training.timers import PhaseTimers
from recipe.training.update import PolicyUpdate, logprobs_without_grad
from rewards.stage import Reward

FINAL_DIR = "final"
SUMMARY_FILE = "summary.json"
EVAL_START, EVAL_FINAL = "eval_step0.jsonl", "eval_final.jsonl"
RANK_SEED_STRIDE = 1_000_003  # rank r samples with rollout.seed + r * stride: its own noise


class TimedRetriever:
    """Counts searches and their wall time for `search/latency_s`."""

    def __init__(self, inner: Retriever):
        self.inner = inner
        self.calls = 0
        self.seconds = 0.0

    def search(self, queries, k):
        started = time.perf_counter()
        try:
            return self.inner.search(queries, k)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - started

    def pop_latency(self) -> float:
        latency = self.seconds / self.calls if self.calls else 0.0
        self.calls, self.seconds = 0, 0.0
        return latency


def generation_copy(model, dtype: torch.dtype):
    """A frozen copy of the policy in `dtype` for the rollout backend."""
    copied = copy.deepcopy(model).to(dtype)
    copied.requires_grad_(False)
    return copied.eval()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """`Trainer(cfg, model, tokenizer, retriever, reward, train_records, eval_records).fit()`.

    `model` is the policy in the dtype DeepSpeed trains in (`recipe.training.engine.
    training_dtype`); `backend_factory(model, tokenizer)` builds the generation backend (default:
    the one `rollout.backend` names) over the generation copy, or over the training module itself
    for vLLM; `on_step_end(step)` runs after each step's logs and checkpoint.
    """

    def __init__(
        self,
        cfg: RunConfig,
        model,
        tokenizer,
        retriever: Retriever,
        reward: Reward,
        train_records: Sequence,
        eval_records: Sequence = (),
        *,
        backend_factory: Callable[..., GenerationBackend] | None = None,
        on_step_end: Callable[[int], None] | None = None,
    ):
        self.cfg = cfg
        self.tc = cfg.trainer
        self.tokenizer = tokenizer
        self.reward = reward
        self.on_step_end = on_step_end
        self.run_dir = Path(self.tc.runs_dir) / self.tc.run_name
        self.eval_records = sample_questions(
            eval_records, cfg.data.eval_questions, cfg.data.eval_seed
        )
        seed_everything(self.tc.seed)
        self.sampler = QuestionSampler(train_records, self.tc.seed)
        self.samples_per_step = self.tc.prompts_per_step * cfg.rollout.samples_per_prompt
        freeze_lower(model, self.tc.frozen_layers)
        if self.tc.gradient_checkpointing:
            # Non-reentrant: frozen lower layers leave the inputs of the first trained layer
            # without grad, which the reentrant variant would silently not differentiate.
            model.gradient_checkpointing_enable({"use_reentrant": False})
        model.train()
        self.ref_model = None
        if cfg.algo.kl_coef != 0.0:
            self.ref_model = generation_copy(model, torch_dtype(cfg.model.dtype))
        self.engine, self.scheduler = build_engine(model, self.tc, self.samples_per_step)
        device = self.engine.device.type
        self.autocast = autocast_enabled(self.tc.autocast_bf16, device)
        if self.ref_model is not None:  # the engine moved the policy to its device
            self.ref_model.to(self.engine.device)
        self.ranks = current_ranks()
        self._check_ranks()
        try:
            self.optimizer_step = OptimizerStep(self.engine, self.ranks)
        except ValueError as e:
            raise TrainingError(str(e)) from None
        self.update = PolicyUpdate(cfg, self.engine, self.optimizer_step, self.ranks, self._forward)
        # vLLM keeps its own engine weights, loaded from the training module by reference.
        self.gen_model = None
        if cfg.rollout.backend != "vllm":
            self.gen_model = generation_copy(
                self.engine.module, torch_dtype(cfg.model.dtype, device)
            )
        self.retriever = TimedRetriever(retriever)
        factory = backend_factory or (lambda m, t: build_backend(cfg, m, t))
        self.backend = backend = factory(self._generation_weights(), tokenizer)
        seed = cfg.rollout.seed + RANK_SEED_STRIDE * self.ranks.rank
        rollout = dataclasses.replace(cfg.rollout, seed=seed)
        self.rollouts = build_rollout_engine(cfg, backend, self.retriever, rollout)
        eval_rollout = dataclasses.replace(cfg.rollout, temperature=self.tc.eval_temperature)
        self.eval_rollouts = build_rollout_engine(cfg, backend, self.retriever, eval_rollout)
        self.checkpoints = CheckpointStore(
            self.run_dir, self.tc.keep_checkpoints, self.tc.checkpoint_hash_limit_mb
        )
        self.timers = PhaseTimers()
        self.step_done = 0
        self.stop_requested = False

    def _check_ranks(self) -> None:
        world = self.ranks.world
        if world == 1:
            return
        if self.tc.prompts_per_step % world:
            raise TrainingError(
                f"trainer.prompts_per_step={self.tc.prompts_per_step} does not split over {world} "
                f"ranks (each question's samples stay on one rank); use a multiple of {world}"
            )
        if self.engine.device.type == "cpu":
            torch.set_num_threads(threads_per_rank())

    # ------------------------------------------------------------------------------- run

    def fit(self) -> dict:
        """Train to `trainer.steps` (resuming per `trainer.resume`); returns the summary."""
        with folder_lock(self.run_dir, self.ranks.rank, "training run"):
            with naming_a_full_disk(self.run_dir, "the run's files", writes_only=False):
                return self._fit()

    def _fit(self) -> dict:
        self._resume()
        main = self.ranks.is_main
        tracker = MetricsTracker(
            self.run_dir, self.cfg.logging, resume_step=self.step_done, enabled=main
        )
        previous = signal.signal(signal.SIGTERM, self._request_stop)
        try:
            if self.step_done == 0 and self.tc.eval_at_start and self.eval_records:
                self._evaluate(EVAL_START, tracker, step=0)
            steps = range(self.step_done + 1, self.tc.steps + 1)
            progress = self.cfg.logging.progress and main
            bar = tqdm(steps, desc=self.tc.run_name, unit="step", disable=not progress)
            for step in bar:
                scalars = self.step(step, tracker)
                if main:
                    tqdm.write(console_line(step, self.tc.steps, scalars))
                if self.ranks.any(self.stop_requested):  # every rank stops after the same step
                    self._save(step)
                    raise TrainingError(f"stopped by SIGTERM after step {step}; rerun to resume")
                if self.tc.save_every and step % self.tc.save_every == 0:
                    self._save(step)
                if self.on_step_end is not None:
                    self.on_step_end(step)
            if self.tc.save_every == 0 or self.step_done % self.tc.save_every:
                self._save(self.step_done)
            if main:
                export_hf(self.engine.module, self.tokenizer, self.run_dir / FINAL_DIR)
            if self.tc.eval_at_end and self.eval_records:
                self._evaluate(EVAL_FINAL, tracker, step=self.step_done)
            self.ranks.barrier()
            return self._write_summary() if main else {}
        finally:
            signal.signal(signal.SIGTERM, previous)
            tracker.close()

    def _request_stop(self, signum, frame) -> None:
        self.stop_requested = True  # a checkpoint at the end of this step, then exit

    def _resume(self) -> None:
        settings = RunSettings(self.run_dir)
        now = run_settings(self.cfg, self.sampler.records)
        check_allow_list(self.tc.resume_allow_changes, list(now))
        main = self.ranks.is_main

        def check_settings() -> None:
            if settings.exists():
                settings.check(now, self.tc.resume_allow_changes, record=main)

        found = load_resume_state(
            self.checkpoints, self.engine, self.tc.resume, self._say, check_settings
        )
        if found is None or not settings.exists():  # the run's first start: what it runs under
            if main:
                settings.write(now)
                save_config(self.cfg, self.run_dir)
        if found is None:
            return
        folder, state = found
        self.sampler.load_state_dict(state["sampler"])
        self.rollouts.load_state_dict(state["rollout"])
        self.eval_rollouts.load_state_dict(state["eval_rollout"])
        self.step_done = int(state["step"])
        self._sync_weights()
        self._say(f"{self.tc.run_name}: resumed from {folder} (step {self.step_done})")

    def _say(self, line: str) -> None:
        if self.ranks.is_main:
            tqdm.write(line)

    def _save(self, step: int) -> None:
        state = {
            "sampler": self.sampler.state_dict(),
            "rollout": self.rollouts.state_dict(),
            "eval_rollout": self.eval_rollouts.state_dict(),
        }
        try:
            self.checkpoints.save(self.engine, self.tokenizer, step, state, self.cfg, self.ranks)
        except WriteFailed as e:
            kept = self.checkpoints.latest()
            previous = f"{kept} is intact and still the latest" if kept else "no earlier one"
            fix = "free space" if isinstance(e, DiskFull) else "fix the disk"
            raise type(e)(
                f"{e}; step {step} is not saved, {previous}; {fix} and rerun to resume"
            ) from e

    # ------------------------------------------------------------------------------ step

    def step(self, step: int, tracker: MetricsTracker) -> dict[str, float]:
        started = time.perf_counter()
        records = self.sampler.next_batch(self.tc.prompts_per_step)  # the same on every rank
        own = [records[i] for i in self.ranks.block(len(records))]
        with self.timers("rollout"):
            trajectories = self.rollouts.rollout(own)
        with self.timers("reward"):
            results = [self.reward(t.response_text, t.golds) for t in trajectories]
        trajectories, results = self._gather_step(trajectories, results)
        batch = collate(trajectories, [r.total for r in results], self.tokenizer.pad_token_id)
        batch = batch.to(self.engine.device)
        with self.timers("ref"):
            ref = self._reference_logprobs(batch)
        with self.timers("update"):
            update = self.update(batch, ref)
        with self.timers("sync"):
            self._sync_weights()
        self.step_done = step
        scalars = rollout_metrics(trajectories, results, self.cfg.tags, self.cfg.reward)
        scalars.update(update)
        scalars["search/latency_s"] = self.retriever.pop_latency()
        scalars.update(self.timers.pop())
        scalars["timing/step"] = time.perf_counter() - started
        tracker.log(step, scalars)
        tracker.log_trajectories(step, trajectories, results, self.tokenizer)
        return scalars

    def _gather_step(self, trajectories: list, results: list) -> tuple[list, list]:
        """Every rank's trajectories and rewards, in rank order (groups stay whole)."""
        if self.ranks.world == 1:
            return trajectories, results
        parts = self.ranks.gather((trajectories, results))
        return [t for ts, _ in parts for t in ts], [r for _, rs in parts for r in rs]

    def _reference_logprobs(self, batch: TrainBatch) -> torch.Tensor | None:
        if self.ref_model is None:
            return None
        rows = range(len(batch))  # every rank's: the advantages see the whole step
        return logprobs_without_grad(
            self._forward, self.ref_model, batch, rows, self.tc.micro_batch_tokens
        )

    def _forward(self, model, sub: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probs [B, T] at the action tokens, entropy at each) of one micro-batch. The
        shared-prompt shortcut hands the prefix to the layers as a KV cache, which transformers'
        checkpointed layers drop in training: off with gradient checkpointing."""
        device = self.engine.device.type  # the engine's: cpu or cuda
        prefix = 0 if self.tc.gradient_checkpointing else sub.shared_prefix
        with torch.autocast(device, dtype=torch.bfloat16, enabled=self.autocast):
            return sequence_logprobs(
                model,
                sub.input_ids,
                sub.attention_mask,
                sub.action_mask,
                self.cfg.rollout.temperature,
                prefix,
            )

    def _generation_weights(self):
        """What the backend samples from: the generation copy, or the training module."""
        return self.engine.module if self.gen_model is None else self.gen_model

    def _sync_weights(self) -> None:
        if self.gen_model is not None:
            self.gen_model.load_state_dict(self.engine.module.state_dict())
        self.backend.load_weights(self._generation_weights())

    # -------------------------------------------------------------------------- evaluation

    def _evaluate(self, name: str, tracker: MetricsTracker, step: int) -> dict:
        started = time.perf_counter()
        world, rank = self.ranks.world, self.ranks.rank
        rows = evaluate(
            self.eval_rollouts,
            self.eval_records[rank::world],
            self.cfg.tags,
            self.cfg.reward,
            progress=self.cfg.logging.progress and self.ranks.is_main,
        )
        if world > 1:  # rank r scored questions r, r + world, ...: interleave them back
            parts = self.ranks.gather(rows)
            rows = [parts[i % world][i // world] for i in range(len(self.eval_records))]
        if not self.ranks.is_main:
            return {}
        write_jsonl(self.run_dir / name, rows)
        summary = summarize(rows)
        scalars = {f"dev/{k}": v for k, v in summary.items() if k != "questions"}
        tracker.log(step, {**scalars, "timing/eval": time.perf_counter() - started}, always=True)
        tqdm.write(f"{self.tc.run_name} dev (step {step}, {len(rows)} questions): {summary}")
        return summary

    def _write_summary(self) -> dict:
        summary: dict = {"run": self.tc.run_name, "steps": self.step_done}
        evaluations = {
            name: read_predictions(self.run_dir / name)
            for name in (EVAL_START, EVAL_FINAL)
            if (self.run_dir / name).is_file()
        }
        for key, name in (("dev_start", EVAL_START), ("dev_final", EVAL_FINAL)):
            if name in evaluations:
                summary[key] = summarize(evaluations[name])
                summary[f"{key}_by_kind"] = summarize_by_kind(evaluations[name])
        if EVAL_FINAL in evaluations:
            ours = evaluations[EVAL_FINAL]
            pairs = {}
            if EVAL_START in evaluations:
                pairs["vs_start"] = evaluations[EVAL_START]
            if self.tc.compare_with:
                other = Path(self.tc.compare_with)
                for label, name in ((other.name, EVAL_FINAL), (f"{other.name}_start", EVAL_START)):
                    if (other / name).is_file():
                        pairs[f"vs_{label}"] = read_predictions(other / name)
            ev = self.cfg.eval
            summary["paired"] = {
                label: {
                    m: paired_difference(ours, theirs, m, ev.bootstrap_seed, ev.bootstrap_samples)
                    for m in ev.paired_metrics
                }
                for label, theirs in pairs.items()
            }
        write_json(self.run_dir / SUMMARY_FILE, summary)
        return summary
