"""Stage 2 through its composition root: `stages.run.run_stage` with the smoke configs on the
tiny world of `demo.build`, from the `final/` export a one-step stage 1 wrote. The policy
answers every question well formed, but for one sample forced to drop `</think>`: the format
penalty (-2) reaches that step's rewards and pushes its advantage below its group's."""

from __future__ import annotations

import json

import pytest
import torch

import recipe.training.update as update_module
from demo.build import build
from recipe.config import load_config
from recipe.generation.hf import HFBackend
from recipe.schema import RunConfig
from stages.run import run_stage
from tests.recipe.tiny_world import FREE_TOKENS, REPO

pytestmark = pytest.mark.usefixtures("smollm2_gguf_file", "one_torch_thread")

WORLD = "runs/smoke/world"
SHARED = [
    f"data.train_files=[{WORLD}/train.json]",
    "data.source_format=hotpotqa",
    "data.eval_files=[]",
    "trainer.steps=1",
    "logging.progress=false",
]


class AnswerWithOneMalformed:
    """A logits processor: after FREE_TOKENS sampled tokens, force a well-formed gold answer,
    except in the first sample to reach that point, which answers without `</think>`."""

    def __init__(self, tokenizer, tags, answers: dict[str, str]):
        self.tokenizer, self.tags, self.answers = tokenizer, tags, answers
        self.malformed_key = None

    def _plan(self, context: list[int], key: tuple) -> list[int]:
        question = next(q for q in self.answers if q in self.tokenizer.decode(context))
        tags = self.tags
        if self.malformed_key is None:
            self.malformed_key = key
        think_end = "" if key == self.malformed_key else f" {tags.think_end}\n\n"
        text = f"{think_end}{tags.answer_start} {self.answers[question]} {tags.answer_end}"
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def __call__(self, context_ids, output_ids, logits: torch.Tensor) -> torch.Tensor:
        step = len(output_ids) - FREE_TOKENS
        if step < 0:
            return logits
        plan = self._plan(list(context_ids), (tuple(context_ids), tuple(output_ids[:FREE_TOKENS])))
        if step >= len(plan):
            return logits
        forced = torch.full_like(logits, float("-inf"))
        forced[plan[step]] = 0.0
        return forced


@pytest.fixture
def smoke_world(tmp_path, monkeypatch, smollm2_tokenizer):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    build(tmp_path / WORLD, seed=0, tokenizer=smollm2_tokenizer, format_steps=0)
    return tmp_path


def test_stage2_from_a_stage1_export_carries_the_format_penalty_into_the_advantages(
    smoke_world, monkeypatch
):
    stage1 = load_config(
        RunConfig, "configs/smoke/stage1.yaml", [*SHARED, "trainer.eval_at_start=false"]
    )
    run_stage(stage1)
    assert (smoke_world / "runs/smoke/stage1/final/model.safetensors").is_file()

    seen = []

    def recording(*args, **kwargs):
        advantages, returns = compute(*args, **kwargs)
        seen.append((args[1].clone(), advantages.clone(), args[2].clone()))
        return advantages, returns

    compute = update_module.compute_advantages
    monkeypatch.setattr(update_module, "compute_advantages", recording)
    cfg = load_config(
        RunConfig, "configs/smoke/stage2.yaml", [*SHARED, "trainer.compare_with=null"]
    )
    assert cfg.model.path == "runs/smoke/stage1/final" and cfg.reward.name == "stage2"
    answers = {
        q["question"]: q["answer"]
        for q in json.loads((smoke_world / WORLD / "train.json").read_text())
    }
    steering = []

    def backend(model, tokenizer):
        steering.append(AnswerWithOneMalformed(tokenizer, cfg.tags, answers))
        return HFBackend(model, tokenizer, steering[-1:])

    summary = run_stage(cfg, backend_factory=backend)
    assert summary["steps"] == 1

    run = smoke_world / "runs/smoke/stage2"
    rows = [json.loads(line) for line in (run / "trajectories.jsonl").read_text().splitlines()]
    rewards = [row["reward"] for row in rows]
    assert len(rows) == cfg.trainer.prompts_per_step * cfg.rollout.samples_per_prompt
    # F1 1 for every gold answer; the malformed one adds the -2 penalty.
    assert sorted(rewards) == [-1.0] + [1.0] * (len(rows) - 1)
    (malformed,) = [row for row in rows if row["reward"] < 0]
    assert malformed["parts"]["format_penalty"] == -2.0 and malformed["parts"]["f1"] == 1.0
    metrics = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert metrics["reward/total"] == pytest.approx(sum(rewards) / len(rewards))
    assert metrics["reward/groups_all_equal"] == pytest.approx(0.5)  # the other question's

    ((batch_rewards, advantages, mask),) = seen
    bad = int(torch.argmin(batch_rewards))
    assert float(batch_rewards[bad]) == -1.0
    per_row = (advantages * mask).sum(dim=1) / mask.sum(dim=1)
    group = [r for r in range(len(per_row)) if rows[r]["id"] == rows[bad]["id"] and r != bad]
    assert len(group) == cfg.rollout.samples_per_prompt - 1
    assert float(per_row[bad]) < 0 < min(float(per_row[r]) for r in group)
