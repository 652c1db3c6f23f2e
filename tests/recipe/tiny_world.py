"""A tiny RL world for trainer tests: a Llama-shaped model built from a config over SmolLM2's
tokenizer, the demo passages behind the real BM25 retriever, and a steering script that makes a
sample search or answer at once depending on the parity of its first freely sampled token.

The model samples for real, so which samples search (and so the stage-1 rewards) depends on
its weights and the seed; the trainer's updates then change what later steps sample.
`python tests/recipe/tiny_world.py RUN_DIR STEPS [KILL_AFTER [SIGNAL]]` trains in a subprocess
and, with KILL_AFTER, sends itself SIGNAL (default SIGKILL) right after that step (the resume
tests).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from demo.world import DEMO_PASSAGES, DEMO_RECORDS, smollm2_tokenizer, tiny_policy
from recipe.generation.hf import HFBackend
from recipe.prompts import question_prompt_ids
from recipe.retrieval.bm25 import BM25Retriever
from recipe.schema import RunConfig
from recipe.training.trainer import Trainer, TrainingError
from rewards.stage import build_reward

REPO = Path(__file__).resolve().parents[2]
FREE_TOKENS = 2


def tiny_config(
    run_dir: Path, steps: int, sections: dict[str, dict] | None = None, **trainer
) -> RunConfig:
    """The tiny world's config; `sections` sets fields of other sections by name
    ({"algo": {"kl_coef": 0.1}}), after the tiny world's own settings."""
    cfg = RunConfig()
    cfg.model.prompt_style = "instruct"
    cfg.model.dtype = "float32"
    cfg.retriever.topk = 2
    cfg.rollout.samples_per_prompt = 4
    cfg.rollout.max_segment_tokens = 24
    cfg.rollout.max_response_tokens = 400
    cfg.rollout.max_retrievals = 2
    cfg.rollout.batch_size = 12
    cfg.algo.kl_coef = 0.0
    cfg.reward.name = "stage1"
    cfg.data.eval_questions = 3
    settings = {
        "runs_dir": str(run_dir.parent),
        "run_name": run_dir.name,
        "steps": steps,
        "prompts_per_step": 3,
        "lr": 3e-3,
        "micro_batch_tokens": 2000,
        "deepspeed_config": str(REPO / "configs/deepspeed/cpu_zero0.json"),
        "save_every": 1,
        "keep_checkpoints": 2,
        "eval_at_start": False,
        "eval_at_end": False,
        **trainer,
    }
    for key, value in settings.items():
        setattr(cfg.trainer, key, value)
    cfg.logging.progress = False
    for section, fields in (sections or {}).items():
        for key, value in fields.items():
            setattr(getattr(cfg, section), key, value)
    return cfg


class FirstTokenSteering:
    """A logits processor: after FREE_TOKENS sampled tokens, force the ids of
    `_plan(context, first sampled id)`, one per step; the model chooses everything else."""

    def _plan(self, context: list[int], first_sampled: int) -> list[int]:
        raise NotImplementedError

    def __call__(self, context_ids, output_ids, logits: torch.Tensor) -> torch.Tensor:
        step = len(output_ids) - FREE_TOKENS
        if step < 0:
            return logits
        plan = self._plan(list(context_ids), int(output_ids[0]))
        if step >= len(plan):
            return logits
        forced = torch.full_like(logits, float("-inf"))
        forced[plan[step]] = 0.0
        return forced


class ParityScript(FirstTokenSteering):
    """A logits processor: after FREE_TOKENS sampled tokens, a segment whose first sampled
    token id is even searches the record's next planned query, an odd one answers at once
    (always the gold answer); later segments follow the plan. Only some tokens are forced;
    the model, sampler, engine and retriever run for real."""

    def __init__(self, tokenizer, cfg: RunConfig, records: Sequence):
        self.tokenizer = tokenizer
        self.tags = cfg.tags
        self.prompts = [
            (question_prompt_ids(r.question, tokenizer, cfg.tags, cfg.model.prompt_style), r)
            for r in records
        ]

    def _plan(self, context: list[int], first_sampled: int) -> list[int]:
        prompt, record = next((p, r) for p, r in self.prompts if context[: len(p)] == p)
        done = self.tokenizer.decode(context[len(prompt) :]).count(self.tags.begin_docs)
        tags = self.tags
        if done < len(record.queries) and (done > 0 or first_sampled % 2 == 0):
            text = f" {tags.begin_query}{record.queries[done]}{tags.end_query}"
        else:
            text = f" {tags.think_end}\n\n{tags.answer_start} {record.answers[0]} {tags.answer_end}"
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def tiny_trainer(
    run_dir: Path,
    steps: int,
    on_step_end=None,
    retriever=None,
    records=DEMO_RECORDS,
    sections=None,
    **trainer,
) -> Trainer:
    torch.manual_seed(0)
    cfg = tiny_config(run_dir, steps, sections, **trainer)
    tokenizer = smollm2_tokenizer()
    model = tiny_policy(tokenizer, seed=0)
    steering = ParityScript(tokenizer, cfg, DEMO_RECORDS)

    def backend(model, tokenizer):
        return HFBackend(model, tokenizer, [steering])

    return Trainer(
        cfg,
        model,
        tokenizer,
        BM25Retriever(list(DEMO_PASSAGES)) if retriever is None else retriever,
        build_reward(cfg.reward, cfg.tags),
        records,
        DEMO_RECORDS,
        backend_factory=backend,
        on_step_end=on_step_end,
    )


def main(argv: Sequence[str]) -> int:
    run_dir, steps = Path(argv[0]), int(argv[1])
    kill_after = int(argv[2]) if len(argv) > 2 else None
    signum = signal.Signals[argv[3]] if len(argv) > 3 else signal.SIGKILL

    def maybe_kill(step: int) -> None:
        if step == kill_after:
            os.kill(os.getpid(), signum)

    torch.set_num_threads(1)
    try:
        tiny_trainer(run_dir, steps, on_step_end=maybe_kill).fit()
    except TrainingError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
