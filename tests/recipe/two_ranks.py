"""The tiny world on two ranks, under the DeepSpeed launcher (gloo on CPU):

    deepspeed --num_gpus 2 tests/recipe/two_ranks.py update BATCH.pkl OUT.pt RUN_DIR DS_CONFIG
    deepspeed --num_gpus 2 tests/recipe/two_ranks.py fit RUN_DIR STEPS DS_CONFIG

`update` runs the trainer's update over the pickled (trajectories, rewards), each rank on its
block of rows, and rank 0 saves the summed gradient (read as `engine.step` starts; ZeRO-2 holds
none whole), the updated weights and each rank's micro-batch count before and after ZeRO-2
evens them; `fit` trains with two prompts per step (one per rank).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from recipe.training.batch import collate  # noqa: E402
from recipe.training.update import micro_batches  # noqa: E402
from tests.recipe.tiny_world import tiny_trainer  # noqa: E402


def gradients_at_step(trainer) -> dict:
    """The gradients `engine.step` applies, copied as it starts (test instrumentation)."""
    seen: dict = {}
    real_step = trainer.engine.step

    def step(*args, **kwargs):
        seen.update(
            (n, p.grad.detach().clone())
            for n, p in trainer.engine.module.named_parameters()
            if p.grad is not None
        )
        return real_step(*args, **kwargs)

    trainer.engine.step = step
    return seen


def update(batch_file: str, out_file: str, run_dir: str, ds_config: str) -> None:
    torch.set_num_threads(1)
    trainer = tiny_trainer(
        Path(run_dir),
        steps=1,
        micro_batch_tokens=600,
        prompts_per_step=2,
        deepspeed_config=ds_config,
    )
    with open(batch_file, "rb") as f:
        trajectories, rewards = pickle.load(f)
    batch = collate(trajectories, rewards, trainer.tokenizer.pad_token_id)
    grads = gradients_at_step(trainer)
    rows = trainer.ranks.block(len(batch))
    groups = trainer.ranks.gather(sorted({int(batch.group_index[i]) for i in rows}))
    micro = micro_batches(batch, rows, trainer.tc.micro_batch_tokens)
    tokens = batch.action_mask.sum(dim=1).tolist()
    passes = trainer.ranks.gather(
        (len(micro), len(trainer.optimizer_step.passes(micro, batch.lengths, tokens, 1)))
    )
    stats = trainer.update(batch, None)
    if trainer.ranks.is_main:
        weights = {n: p.detach().clone() for n, p in trainer.engine.module.named_parameters()}
        out = {"grads": grads, "weights": weights, "groups": groups, "stats": stats}
        torch.save({**out, "passes": passes}, out_file)


def fit(run_dir: str, steps: str, ds_config: str) -> None:
    tiny_trainer(Path(run_dir), int(steps), prompts_per_step=2, deepspeed_config=ds_config).fit()


def fit_vllm(run_dir: str, steps: str, out_dir: str) -> None:
    """Train with a vLLM engine in each rank's process; each rank then saves the questions it
    rolled out, where its engine lives, and its engine's greedy continuation of a question with
    the log-probs of those tokens under the trainer's own weights."""
    import os
    from dataclasses import replace

    from demo.world import DEMO_PASSAGES, DEMO_RECORDS, smollm2_tokenizer, tiny_policy
    from recipe.generation import build_backend
    from recipe.generation.base import GenerationRequest, SamplingParams
    from recipe.prompts import question_prompt_ids
    from recipe.retrieval.bm25 import BM25Retriever
    from recipe.training.trainer import Trainer
    from rewards.stage import build_reward
    from tests.recipe.tiny_world import FREE_TOKENS, ParityScript, tiny_config

    torch.set_num_threads(1)
    cfg = tiny_config(Path(run_dir), int(steps), prompts_per_step=2)
    cfg.rollout = replace(
        cfg.rollout, backend="vllm", vllm_kv_cache_gb=0.25, vllm_enforce_eager=True
    )
    tok = smollm2_tokenizer()
    steering = ParityScript(tok, cfg, DEMO_RECORDS)
    trainer = Trainer(
        cfg,
        tiny_policy(tok, seed=0, hidden_size=128),  # head size 32: vLLM's CPU attention's least
        tok,
        BM25Retriever(list(DEMO_PASSAGES)),
        build_reward(cfg.reward, cfg.tags),
        DEMO_RECORDS,
        backend_factory=lambda m, t: build_backend(cfg, m, t, [steering]),
    )
    rolled: list[str] = []
    rollout = trainer.rollouts.rollout

    def recording_rollout(records):  # which questions this rank's engine rolled out
        rolled.extend(r.id for r in records)
        return rollout(records)

    trainer.rollouts.rollout = recording_rollout
    trainer.fit()
    prompt = question_prompt_ids(DEMO_RECORDS[0].question, tok, cfg.tags, cfg.model.prompt_style)
    (greedy,) = trainer.backend.generate(
        [GenerationRequest(prompt, FREE_TOKENS)], SamplingParams(0)
    )
    context = torch.tensor([prompt + greedy.token_ids])
    with torch.no_grad():
        logits = trainer.engine.module(input_ids=context).logits[0].float()
    positions = torch.arange(len(prompt) - 1, len(prompt) - 1 + FREE_TOKENS)
    trainer_logprobs = torch.log_softmax(logits, -1)[positions, context[0, len(prompt) :]]
    engine = trainer.backend.llm.llm_engine
    out = {
        "pid": os.getpid(),
        "rolled": rolled,
        "engine_in_process": hasattr(engine, "model_executor"),  # the in-process engine core
        "generation_copy": trainer.gen_model is not None,
        "engine_logprobs": greedy.logprobs,
        "trainer_logprobs": trainer_logprobs.tolist(),
        "trainer_argmax": logits[positions].argmax(-1).tolist(),
        "engine_tokens": greedy.token_ids,
    }
    torch.save(out, Path(out_dir) / f"rank{trainer.ranks.rank}.pt")
    trainer.backend.close()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"update": update, "fit": fit, "fit_vllm": fit_vllm}[mode](*args)
