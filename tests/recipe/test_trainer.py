"""The trainer on the tiny world (tests/recipe/tiny_world.py): its update is the plain PyTorch
update over the same batch, a SIGKILLed run resumes to exactly the uninterrupted run's weights
and rewards, non-finite updates are skipped then stop the run, and the logs hold the metrics
users know (reward, search calls, response length, KL, loss, timings)."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from recipe.algorithms import compute_advantages, ppo_clip_loss
from recipe.training.batch import collate
from recipe.training.engine import SINGLE_RANK_ENV
from recipe.training.logprobs import sequence_logprobs
from recipe.training.trainer import TrainingError
from recipe.training.update import micro_batches
from rewards.stage import RewardResult
from tests.recipe.tiny_world import REPO, tiny_trainer

pytestmark = pytest.mark.usefixtures("smollm2_gguf_file")


def test_update_equals_a_plain_pytorch_step(tmp_path):
    trainer = tiny_trainer(tmp_path / "run", steps=1, micro_batch_tokens=300)
    from demo.world import DEMO_RECORDS

    trajectories = trainer.rollouts.rollout(DEMO_RECORDS)
    rewards = [trainer.reward(t.response_text, t.golds).total for t in trajectories]
    assert len(set(rewards)) > 1  # a step with something to learn
    batch = collate(trajectories, rewards, trainer.tokenizer.pad_token_id)
    passes = micro_batches(batch, range(len(batch)), trainer.tc.micro_batch_tokens)
    assert len(passes) > 1  # the step is split into several passes
    plain = copy.deepcopy(trainer.engine.module)
    trainer.update(batch, None)

    # The same step written plainly: one pass over the whole batch, AdamW, clipping.
    algo = trainer.cfg.algo
    params = [p for p in plain.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=trainer.tc.lr, weight_decay=0.0)
    logprobs, _ = sequence_logprobs(plain, batch.input_ids, batch.attention_mask, batch.action_mask)
    advantages, _ = compute_advantages(algo, batch.rewards, batch.action_mask, batch.group_index)
    loss, _ = ppo_clip_loss(logprobs, logprobs.detach(), advantages, batch.action_mask)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, trainer.tc.max_grad_norm)
    optimizer.step()

    # Adam's first step is lr * g / (|g| + eps): where |g| is near eps, float noise in g moves
    # the update by up to lr, so weights are compared where the gradient is clearly non-zero.
    trained = dict(trainer.engine.module.named_parameters())
    compared = 0
    for name, p in plain.named_parameters():
        if p.grad is None:
            assert torch.equal(trained[name], p), name  # frozen: untouched
            continue
        sure = p.grad.abs() > 1e-5
        compared += int(sure.sum())
        assert torch.allclose(trained[name][sure], p[sure], atol=1e-6), name
    assert compared > 1000
    head = trainer.engine.module.get_output_embeddings().weight
    moved = head - trainer.gen_model.get_output_embeddings().weight
    assert moved.abs().max() > 0  # the generation copy is synced by step(), not by the update


def _run(run_dir: Path, steps: int, kill_after: int | None = None, signal: str = "SIGKILL"):
    args = [sys.executable, str(REPO / "tests/recipe/tiny_world.py"), str(run_dir), str(steps)]
    if kill_after is not None:
        args += [str(kill_after), signal]
    # A fresh single-rank process group: not the one this test process may hold.
    env = {k: v for k, v in os.environ.items() if k not in SINGLE_RANK_ENV and k != "MASTER_PORT"}
    env.update(PYTHONPATH=str(REPO), OMP_WAIT_POLICY="PASSIVE")
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode not in (0, 1, -9):
        print(done.stderr[-3000:])
    return done.returncode


def _metrics(run_dir: Path) -> dict[int, dict]:
    merged: dict[int, dict] = {}  # a step's training row and its dev row, if any
    with open(run_dir / "metrics.jsonl") as f:
        for row in map(json.loads, f):
            merged.setdefault(row["step"], {}).update(row)
    return merged


def test_sigkill_after_step_2_resumes_to_the_uninterrupted_weights(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _run(straight, 4) == 0
    assert _run(killed, 4, kill_after=2) == -9  # SIGKILL right after step 2's checkpoint
    assert not (killed / "final").exists()
    assert _run(killed, 4) == 0  # trainer.resume=auto picks up step 2
    a = load_file(straight / "final" / "model.safetensors")
    b = load_file(killed / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    ma, mb = _metrics(straight), _metrics(killed)
    assert sorted(mb) == [1, 2, 3, 4]  # no step logged twice
    for step in (3, 4):
        assert ma[step]["reward/total"] == mb[step]["reward/total"]
        assert ma[step]["grad_norm"] == mb[step]["grad_norm"]
    lines = (killed / "trajectories.jsonl").read_text().splitlines()
    assert sorted({json.loads(line)["step"] for line in lines}) == [1, 2, 3, 4]
    assert len(lines) == len((straight / "trajectories.jsonl").read_text().splitlines())
    # keep_checkpoints=2: steps 3 and 4 remain, each with an HF export and its marker
    kept = sorted(p.name for p in (killed / "checkpoints").glob("step-*"))
    assert kept == ["step-000003", "step-000004"]
    assert (killed / "checkpoints" / "step-000004" / "hf" / "model.safetensors").is_file()


@pytest.mark.slow
def test_sigterm_checkpoints_at_the_end_of_the_step_and_exits(tmp_path):
    run = tmp_path / "run"
    # SIGTERM arrives after step 1; the trainer finishes step 2, saves it, and exits 1.
    assert _run(run, 4, kill_after=1, signal="SIGTERM") == 1
    assert sorted(_metrics(run)) == [1, 2]
    assert (run / "checkpoints" / "step-000002" / "COMPLETE").is_file()
    assert not (run / "final").exists()
    assert _run(run, 4) == 0
    assert sorted(_metrics(run)) == [1, 2, 3, 4]


def test_final_export_loads_with_from_pretrained(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trainer = tiny_trainer(tmp_path / "run", steps=1, eval_at_end=True)
    summary = trainer.fit()
    final = tmp_path / "run" / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    AutoTokenizer.from_pretrained(final)
    for name, p in trainer.engine.module.named_parameters():
        assert torch.equal(p.detach(), dict(model.named_parameters())[name]), name
    assert summary["dev_final"]["questions"] == 3
    assert (tmp_path / "run" / "summary.json").is_file()
    names = set(_metrics(tmp_path / "run")[1])
    for key in (
        "reward/total", "reward/format_valid", "search/calls_per_sample", "search/latency_s",
        "search/answer_in_documents", "search/answered_without_search", "response_length/mean",
        "masked_token_fraction", "policy_loss", "clip_fraction", "entropy", "grad_norm", "lr",
        "timing/rollout", "timing/reward", "timing/ref", "timing/update", "timing/sync",
        "timing/step",
    ):  # fmt: skip
        assert key in names, key
    assert any(k.startswith("rollout/stop/") for k in names)


@pytest.mark.slow
def test_resume_off_refuses_a_run_folder_with_checkpoints(tmp_path):
    tiny_trainer(tmp_path / "run", steps=1).fit()
    with pytest.raises(TrainingError, match="resume=off"):
        tiny_trainer(tmp_path / "run", steps=2, resume="off").fit()


@pytest.mark.parametrize("zero", ["cpu_zero0", "cpu_zero2"])
def test_non_finite_updates_are_skipped_then_stop_the_run(tmp_path, zero):
    ds_config = str(REPO / f"configs/deepspeed/{zero}.json")  # ZeRO-2: DeepSpeed skips them
    trainer = tiny_trainer(
        tmp_path / "run", steps=5, max_nonfinite_steps=2, save_every=0, deepspeed_config=ds_config
    )
    trainer.reward = lambda text, golds: RewardResult(math.nan, {}, ())
    before = {n: p.detach().clone() for n, p in trainer.engine.module.named_parameters()}
    with pytest.raises(TrainingError, match="non-finite"):
        trainer.fit()
    rows = _metrics(tmp_path / "run")
    assert sorted(rows) == [1]  # step 2 raised before its logs
    assert rows[1]["update/skipped"] == 1.0
    for name, p in trainer.engine.module.named_parameters():
        assert torch.equal(p, before[name]), name


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    from recipe.training import checkpoint

    real_export = checkpoint.export_hf
    calls = []

    def export_then_fill_the_disk(model, tokenizer, out_dir):
        calls.append(out_dir)
        if len(calls) == 2:  # the second checkpoint's export: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_export(model, tokenizer, out_dir)

    monkeypatch.setattr(checkpoint, "export_hf", export_then_fill_the_disk)
    trainer = tiny_trainer(tmp_path / "run", steps=2)
    with pytest.raises(TrainingError, match="disk full.*step-000001 is intact"):
        trainer.fit()
    store = checkpoint.CheckpointStore(tmp_path / "run", keep=2)
    assert store.latest().name == "step-000001"
    assert [p.name for p in store.root.iterdir() if p.name.startswith("step-")] == ["step-000001"]
    monkeypatch.setattr(checkpoint, "export_hf", real_export)
    resumed = tiny_trainer(tmp_path / "run", steps=2)
    resumed.fit()
    assert resumed.step_done == 2


@pytest.mark.slow
def test_a_retrieval_service_that_dies_stops_the_run_and_the_rerun_resumes(tmp_path):
    from demo.world import DEMO_PASSAGES
    from recipe.retrieval.bm25 import BM25Retriever
    from recipe.retrieval.client import CachedRetriever, HttpRetriever, RetrievalUnavailable
    from recipe.retrieval.server import create_app
    from recipe.schema import RetrieverConfig
    from recipe.training.checkpoint import CheckpointStore
    from tests.loopback import LoopbackServer

    def service_and_client():
        server = LoopbackServer(create_app(BM25Retriever(list(DEMO_PASSAGES)), RetrieverConfig()))
        client = HttpRetriever(
            server.url, timeout_s=5.0, max_retries=2, backoff_s=0.01, max_queries_per_request=64
        )
        return server, client

    server, client = service_and_client()
    seen = {}

    def kill_service_after_step_1(step: int) -> None:
        if step == 1:
            server.stop()
            seen["requests"] = client.requests

    run = tmp_path / "run"
    trainer = tiny_trainer(
        run, steps=2, on_step_end=kill_service_after_step_1, retriever=CachedRetriever(client, 0)
    )
    with pytest.raises(RetrievalUnavailable, match="failed 3 attempts"):
        trainer.fit()
    assert client.requests - seen["requests"] == 3  # bounded retries, then the error
    assert CheckpointStore(run, keep=2).latest().name == "step-000001"
    assert sorted(_metrics(run)) == [1]

    server, client = service_and_client()  # the service is back: the rerun does step 2
    try:
        resumed = tiny_trainer(run, steps=2, retriever=CachedRetriever(client, 0))
        resumed.fit()
    finally:
        server.stop()
    assert resumed.step_done == 2 and sorted(_metrics(run)) == [1, 2]
