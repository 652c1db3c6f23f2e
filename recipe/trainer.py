"""The RL trainer: Reinforce++ (or any registered estimator) over search-interleaved rollouts.

One step, top to bottom (`Trainer.step`):
1. rollout: `trainer.prompts_per_step` questions x `rollout.samples_per_prompt` trajectories
   from the generation copy of the policy (`recipe.rollout`);
2. reward: the stage reward of each response against the golds that travel with it;
3. old log-probs: the sampler's, or the trainer's own (`trainer.old_logprobs: recompute`: the
   first epoch's forward, taken before any update, so it costs nothing), and reference
   log-probs from a frozen copy of the initial policy, built only when `algo.kl_coef` is not 0;
4. advantages over the whole step (`recipe.algorithms` registry): group baselines and
   whitening see every sample of the step, never a micro-batch;
5. update: `trainer.ppo_epochs` optimizer steps, each over the step's micro-batches (by tokens)
   through the DeepSpeed engine; the loss is the token mean over the step's action tokens;
6. sync: the new weights are copied into the generation copy;
7. logs: TensorBoard, `metrics.jsonl`, the trajectories, a console line; a checkpoint every
   `trainer.save_every` steps.

Several ranks (`recipe.training.ranks`): each rolls out its block of the step's questions, the
trajectories are gathered so every rank collates the same batch and computes the same
advantages, each trains on its own rows, and the gradients are summed over ranks before one update
(`recipe.training.optimizer_step`: by the trainer under ZeRO stage 0, by DeepSpeed under 1-2);
rank 0 writes the logs, the exports and the checkpoints' own files.

The generation copy holds the weights in `model.dtype` (bf16 by default) while the trainer keeps
fp32 master weights: bf16 weights would round most updates at lr 1e-5 away, and decoding runs
about 3x faster in bf16 on this CPU. Retrieved tokens are never targets (action mask 0).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from recipe.algorithms import compute_advantages, get_policy_loss, kl_loss, masked_mean
from recipe.atomic import write_json, write_jsonl
from recipe.config import save_config
from recipe.evaluation import (
    evaluate,
    paired_difference,
    read_predictions,
    sample_questions,
    summarize,
    summarize_by_kind,
)
from recipe.generation import build_backend
from recipe.generation.base import GenerationBackend
from recipe.policy import DTYPES
from recipe.retrieval.base import Retriever
from recipe.rollout import RolloutEngine
from recipe.schema import RunConfig
from recipe.training.batch import TrainBatch, collate
from recipe.training.checkpoint import CheckpointStore, export_hf, load_checkpoint
from recipe.training.engine import build_engine
from recipe.training.logprobs import sequence_logprobs, token_entropy
from recipe.training.metrics import MetricsTracker, console_line
from recipe.training.microbatch import token_micro_batches
from recipe.training.monitors import rollout_metrics
from recipe.training.optim import freeze_lower
from recipe.training.optimizer_step import OptimizerStep
from recipe.training.ranks import current_ranks, threads_per_rank
from recipe.training.sampler import QuestionSampler
from recipe.training.timers import PhaseTimers
from rewards.stage import Reward

FINAL_DIR = "final"
SUMMARY_FILE = "summary.json"
EVAL_START, EVAL_FINAL = "eval_step0.jsonl", "eval_final.jsonl"
RANK_SEED_STRIDE = 1_000_003  # rank r samples with rollout.seed + r * stride: its own noise


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite updates in a row, a run folder in the way)."""


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

    `model` is the policy in fp32 (it becomes the master weights); `backend_factory(model,
    tokenizer)` builds the generation backend over the generation copy (default: the one
    `rollout.backend` names); `on_step_end(step)` runs after each step's logs and checkpoint.
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
        model.train()
        self.ref_model = None
        if cfg.algo.kl_coef != 0.0:
            self.ref_model = generation_copy(model, DTYPES[cfg.model.dtype])
        self.engine, self.scheduler = build_engine(model, self.tc, self.samples_per_step)
        if self.ref_model is not None:  # the engine moved the policy to its device
            self.ref_model.to(self.engine.device)
        self.ranks = current_ranks()
        self._check_ranks()
        try:
            self.optimizer_step = OptimizerStep(self.engine, self.ranks)
        except ValueError as e:
            raise TrainingError(str(e)) from None
        self.gen_model = generation_copy(model, DTYPES[cfg.model.dtype])
        self.retriever = TimedRetriever(retriever)
        factory = backend_factory or (lambda m, t: build_backend(cfg, m, t))
        self.backend = backend = factory(self.gen_model, tokenizer)
        seed = cfg.rollout.seed + RANK_SEED_STRIDE * self.ranks.rank
        self.rollouts = RolloutEngine(
            backend,
            self.retriever,
            cfg.tags,
            dataclasses.replace(cfg.rollout, seed=seed),
            topk=cfg.retriever.topk,
            prompt_style=cfg.model.prompt_style,
        )
        eval_rollout = dataclasses.replace(cfg.rollout, temperature=self.tc.eval_temperature)
        self.eval_rollouts = RolloutEngine(
            backend,
            self.retriever,
            cfg.tags,
            eval_rollout,
            topk=cfg.retriever.topk,
            prompt_style=cfg.model.prompt_style,
        )
        self.policy_loss = get_policy_loss(cfg.algo.policy_loss)
        self.checkpoints = CheckpointStore(self.run_dir, self.tc.keep_checkpoints)
        self.timers = PhaseTimers()
        self.step_done = 0
        self.nonfinite_in_a_row = 0
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
        torch.set_num_threads(threads_per_rank())

    # ------------------------------------------------------------------------------- run

    def fit(self) -> dict:
        """Train to `trainer.steps` (resuming per `trainer.resume`); returns the summary."""
        self._resume()
        main = self.ranks.is_main
        if main:
            save_config(self.cfg, self.run_dir)
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
        mode = self.tc.resume
        if mode == "off":
            if self.checkpoints.latest() is not None:
                raise TrainingError(
                    f"{self.run_dir} already holds checkpoints and trainer.resume=off; "
                    "use trainer.resume=auto or another trainer.run_name"
                )
            return
        folder = self.checkpoints.latest() if mode == "auto" else Path(mode)
        if folder is None:
            return
        state = load_checkpoint(self.engine, folder)
        self.sampler.load_state_dict(state["sampler"])
        self.rollouts.load_state_dict(state["rollout"])
        self.eval_rollouts.load_state_dict(state["eval_rollout"])
        self.step_done = int(state["step"])
        self._sync_weights()
        if self.ranks.is_main:
            tqdm.write(f"{self.tc.run_name}: resumed from {folder} (step {self.step_done})")

    def _save(self, step: int) -> None:
        state = {
            "sampler": self.sampler.state_dict(),
            "rollout": self.rollouts.state_dict(),
            "eval_rollout": self.eval_rollouts.state_dict(),
        }
        self.checkpoints.save(self.engine, self.tokenizer, step, state, self.cfg, self.ranks)

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
            update = self._update(batch, ref, self.ranks.block(len(batch)))
        with self.timers("sync"):
            self._sync_weights()
        self.step_done = step
        scalars = rollout_metrics(trajectories, results, self.cfg.tags, self.cfg.reward)
        scalars.update(update)
        scalars["search/latency_s"] = self.retriever.pop_latency()
        scalars["lr"] = float(self.scheduler.get_last_lr()[0])
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
        return self._logprobs_without_grad(self.ref_model, batch)

    def _micro_batches(self, batch: TrainBatch, rows: Sequence[int] | None = None):
        rows = range(len(batch)) if rows is None else rows
        return token_micro_batches(rows, batch.lengths, self.tc.micro_batch_tokens)

    def _logprobs(self, model, sub: TrainBatch):
        """(log-probs [B, T] at the action tokens, their logits) of one micro-batch."""
        device = self.engine.device.type  # the engine's: cpu here, cuda on GPU
        with torch.autocast(device, dtype=torch.bfloat16, enabled=self.tc.autocast_bf16):
            return sequence_logprobs(
                model,
                sub.input_ids,
                sub.attention_mask,
                sub.action_mask,
                self.cfg.rollout.temperature,
                sub.shared_prefix,
            )

    @torch.no_grad()
    def _logprobs_without_grad(self, model, batch: TrainBatch) -> torch.Tensor:
        """The whole step's log-probs under `model`, micro-batch by micro-batch."""
        out = torch.zeros_like(batch.old_logprobs)
        for rows in self._micro_batches(batch):
            values, _ = self._logprobs(model, batch.select(rows))
            out[rows, : values.shape[1]] = values.float()
        return out

    def _old_logprobs(self, batch: TrainBatch) -> torch.Tensor | None:
        """The behaviour log-probs when they are known before the update; None when the first
        epoch's forward provides them (recompute without KL in the reward)."""
        algo = self.cfg.algo
        if self.tc.old_logprobs == "sampler":
            return batch.old_logprobs
        if not (algo.kl_in_reward and algo.kl_coef != 0.0):
            return None
        return self._logprobs_without_grad(self.engine.module, batch)

    def _update(
        self, batch: TrainBatch, ref: torch.Tensor | None, rows: Sequence[int] | None = None
    ) -> dict[str, float]:
        """`ppo_epochs` updates from the whole step's advantages; this rank trains on `rows`."""
        algo = self.cfg.algo
        old = self._old_logprobs(batch)
        advantages, returns = compute_advantages(
            algo, batch.rewards, batch.action_mask, batch.group_index, old, ref
        )
        micro = self._micro_batches(batch, rows)
        fill_old = old is None
        if fill_old:
            old = torch.zeros_like(batch.old_logprobs)
        sums: dict[str, float] = {}
        for epoch in range(self.tc.ppo_epochs):
            stats = self._epoch(batch, micro, advantages, old, ref, fill_old and epoch == 0)
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value / self.tc.ppo_epochs
        sums["advantage/mean"] = float(masked_mean(advantages, batch.action_mask))
        sums["return/mean"] = float(masked_mean(returns, batch.action_mask))
        sums["tokens/action"] = float(batch.action_mask.sum())
        return sums

    def _epoch(self, batch, micro, advantages, old, ref, fill_old: bool) -> dict[str, float]:
        """One optimizer step over all micro-batches; statistics are token-weighted means."""
        algo = self.cfg.algo
        total_tokens = max(1, int(batch.action_mask.sum()))
        stats = {"policy_loss": 0.0, "clip_fraction": 0.0, "approx_kl": 0.0, "entropy": 0.0}
        if ref is not None:
            stats["kl"] = 0.0
        finite = True
        passes = self.optimizer_step.passes(micro, batch.lengths)
        scale = self.optimizer_step.loss_scale
        for rows in passes:
            weight_rows = rows or passes[0]  # an empty pass: a zero-weight backward (ZeRO-2)
            sub = batch.select(weight_rows)
            width = sub.input_ids.shape[1]
            logprobs, logits = self._logprobs(self.engine.module, sub)
            logprobs = logprobs.float()
            if fill_old and rows:
                old[rows, :width] = logprobs.detach()
            sub_old = old[weight_rows, :width]
            sub_ref = ref[weight_rows, :width] if ref is not None else None
            weight = int(sub.action_mask.sum()) / total_tokens if rows else 0.0
            loss, diag = self.policy_loss(
                logprobs, sub_old, advantages[weight_rows, :width], sub.action_mask, algo.clip_eps
            )
            if sub_ref is not None:
                kl_term = kl_loss(logprobs, sub_ref, sub.action_mask, algo.kl_estimator)
                stats["kl"] += float(kl_term) * weight
                if not algo.kl_in_reward:
                    loss = loss + algo.kl_coef * kl_term
            if not torch.isfinite(loss):
                finite = False
                if self.optimizer_step.stops_at_nonfinite_loss:
                    break
            self.engine.backward(loss * (weight * scale), scale_wrt_gas=False)
            stats["policy_loss"] += float(loss.detach()) * weight
            stats["clip_fraction"] += diag["clip_fraction"] * weight
            stats["approx_kl"] += diag["approx_kl"] * weight
            entropy = token_entropy(logits, self.cfg.rollout.temperature)
            stats["entropy"] += float(entropy.mean()) * weight if entropy.numel() else 0.0
        stats = self.ranks.sum_floats(stats)  # token weights are global: the sum is the mean
        finite = not self.ranks.any(not finite)  # one rank's bad loss skips the update everywhere
        grad_norm = self.optimizer_step.apply(finite)
        if grad_norm is None:
            return self._skip_update(stats)
        self.nonfinite_in_a_row = 0
        stats["grad_norm"] = grad_norm
        stats["update/skipped"] = 0.0
        return stats

    def _skip_update(self, stats: dict[str, float]) -> dict[str, float]:
        self.nonfinite_in_a_row += 1
        if self.nonfinite_in_a_row >= self.tc.max_nonfinite_steps:
            raise TrainingError(
                f"{self.nonfinite_in_a_row} updates in a row had a non-finite loss or gradient "
                "(trainer.max_nonfinite_steps); lower trainer.lr or check the reward"
            )
        return {**stats, "grad_norm": math.nan, "update/skipped": 1.0}

    def _sync_weights(self) -> None:
        self.gen_model.load_state_dict(self.engine.module.state_dict())
        self.backend.load_weights(self.gen_model)

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
        tracker.log(step, {**scalars, "timing/eval": time.perf_counter() - started})
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
            summary["paired"] = {
                label: {m: paired_difference(ours, theirs, m) for m in ("f1", "searched", "valid")}
                for label, theirs in pairs.items()
            }
        write_json(self.run_dir / SUMMARY_FILE, summary)
        return summary
