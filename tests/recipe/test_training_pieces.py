"""The trainer's pieces: the trajectory batch, the masked forward, micro-batching, the question
sampler, checkpoints' completion markers, the rollout monitors and the paired comparison."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from recipe.evaluation.scoring import paired_difference, sample_questions
from recipe.rollout import Trajectory, answer_in_documents
from recipe.training.batch import collate
from recipe.training.checkpoint import COMPLETE, LATEST, CheckpointStore
from recipe.training.logprobs import (
    CHUNK_ROWS,
    logprobs_and_entropy,
    sequence_logprobs,
    target_index,
)
from recipe.training.microbatch import split_to_count, token_micro_batches
from recipe.training.monitors import rollout_metrics
from recipe.training.sampler import QuestionSampler
from rewards.format import check_format
from rewards.spec import RewardConfig, TagsConfig
from rewards.stage import build_reward

TAGS = TagsConfig()


def _trajectory(record_id, prompt, pieces, golds=("Oskar",)):
    t = Trajectory(record_id, 0, "q?", list(golds), list(prompt))
    for ids, is_model in pieces:
        t.response_ids.extend(ids)
        t.action_mask.extend([int(is_model)] * len(ids))
        t.logprobs.extend([-0.5 if is_model else 0.0] * len(ids))
        t.segments.append((ids, is_model))
    return t


def test_collate_aligns_mask_and_logprobs_with_tokens():
    a = _trajectory("r0", [1, 2, 3], [([10, 11], True), ([20, 21, 22], False), ([12], True)])
    b = _trajectory("r1", [1, 2], [([13], True)])
    c = _trajectory("r0", [1, 2, 3], [([14, 15], True)])
    batch = collate([a, b, c], [1.0, 0.0, 0.5], pad_id=0)
    assert batch.input_ids.shape == (3, 9)
    assert batch.input_ids[0].tolist() == [1, 2, 3, 10, 11, 20, 21, 22, 12]
    assert batch.action_mask[0].tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 1]
    assert batch.old_logprobs[0].tolist() == [0, 0, 0, -0.5, -0.5, 0, 0, 0, -0.5]
    assert batch.attention_mask[1].tolist() == [1, 1, 1] + [0] * 6
    assert batch.group_index.tolist() == [0, 1, 0]  # the two samples of r0 share a group
    sub = batch.select([1, 2])
    assert sub.input_ids.shape == (2, 5)  # trimmed to the longest selected row
    assert sub.rewards.tolist() == [0.0, 0.5]
    moved = batch.to("meta")  # every tensor goes to the engine's device; the rest is kept
    tensors = ("input_ids", "attention_mask", "action_mask", "old_logprobs", "group_index")
    assert all(getattr(moved, name).is_meta for name in (*tensors, "rewards"))
    assert moved.lengths == batch.lengths and moved.shared_prefix == batch.shared_prefix
    assert moved.select([1, 2]).input_ids.shape == (2, 5)


def test_masked_forward_equals_full_log_softmax(tiny_model):
    torch.manual_seed(0)
    ids = torch.randint(0, 100, (2, 7))
    attention = torch.ones_like(ids)
    attention[1, 5:] = 0
    targets = torch.zeros_like(ids)
    targets[0, [2, 3, 6]] = 1
    targets[1, [1, 4]] = 1
    with torch.no_grad():
        values, entropy = sequence_logprobs(tiny_model, ids, attention, targets, temperature=0.7)
        full = torch.log_softmax(tiny_model(ids, attention_mask=attention).logits.float() / 0.7, -1)
    assert entropy.shape[0] == 5  # the head ran only where a target is predicted
    pairs = zip(*torch.nonzero(targets, as_tuple=True), strict=True)
    for k, (b, t) in enumerate(pairs):
        assert values[b, t] == pytest.approx(full[b, t - 1, ids[b, t]].item(), abs=1e-5)
        expected = -(full[b, t - 1].exp() * full[b, t - 1]).sum()
        assert entropy[k] == pytest.approx(expected.item(), abs=1e-4)
    assert values[targets == 0].abs().max() == 0
    rows, positions = target_index(targets)
    assert positions.tolist() == [1, 2, 5, 0, 3]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_log_softmax_equals_the_whole_one_in_value_entropy_and_gradient(dtype, temperature):
    torch.manual_seed(0)
    rows = 2 * CHUNK_ROWS + 37  # two whole chunks and a part
    logits = (3 * torch.randn(rows, 50)).to(dtype).requires_grad_()
    targets = torch.randint(0, 50, (rows,))
    weights = torch.randn(rows)  # a different gradient for every row
    values, entropy = logprobs_and_entropy(logits, targets, temperature)
    (values * weights).sum().backward()
    ours = logits.grad.clone()
    logits.grad = None
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    expected = logp.gather(1, targets[:, None]).squeeze(1)
    (expected * weights).sum().backward()
    assert values.dtype == torch.float32 and not entropy.requires_grad
    assert torch.allclose(values, expected, atol=1e-5)
    assert torch.allclose(entropy, -(logp.exp() * logp).sum(-1).detach(), atol=1e-4)
    assert ours.dtype == dtype
    tolerance = 1e-6 if dtype == torch.float32 else 1e-2
    assert torch.allclose(ours.float(), logits.grad.float(), atol=tolerance)
    assert ours.float().abs().sum() > 0


def test_micro_batches_keep_the_token_budget_and_every_row():
    lengths = [5, 50, 7, 30, 30, 200, 6]
    batches = token_micro_batches(range(len(lengths)), lengths, max_tokens=64)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 64
    assert [5] in batches  # the 200-token row has a pass of its own
    with pytest.raises(ValueError):
        token_micro_batches([0], [3], 0)


def test_passes_split_to_a_common_count_keep_every_row_once():
    lengths = [10, 10, 10, 10, 40, 40]
    batches = token_micro_batches(range(6), lengths, max_tokens=80)
    assert batches == [[0, 1, 2, 3], [4, 5]]
    split = split_to_count(batches, lengths, 4)
    assert split == [[0, 1], [2, 3], [4], [5]]  # the costliest pass is halved first
    for b in split:  # halving never exceeds the budget
        assert len(b) * max(lengths[i] for i in b) <= 80
    assert split_to_count([[7]], {7: 5}, 3) == [[7], [], []]  # nothing to split: zero-weight passes
    assert split_to_count(batches, lengths, 2) == batches
    with pytest.raises(ValueError, match="fewer"):
        split_to_count(batches, lengths, 1)


def test_sampler_state_resumes_the_same_order():
    records = list(range(7))
    first = QuestionSampler(records, seed=3)
    drawn = first.next_batch(5)
    state = first.state_dict()
    rest = first.next_batch(6)  # crosses into the second epoch
    again = QuestionSampler(records, seed=3)
    again.load_state_dict(state)
    assert again.next_batch(6) == rest
    assert sorted(drawn + rest[:2]) == records


def test_checkpoint_without_its_marker_is_never_loaded(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for step, complete in ((1, True), (2, True), (3, False)):
        folder = store.root / f"step-{step:06d}"
        folder.mkdir(parents=True)
        if complete:
            (folder / COMPLETE).write_text(f"{step}\n")
    (store.root / LATEST).write_text("step-000003\n")  # a kill between rename and marker
    assert store.latest().name == "step-000002"
    (store.root / LATEST).write_text("step-000001\n")
    assert store.latest().name == "step-000001"
    with pytest.raises(ValueError):
        CheckpointStore(tmp_path, keep=0)


def test_rollout_metrics_name_each_rule_and_stop():
    docs = "\n\n<|begin_of_documents|>\n(1)Ansel Drake\nborn in Oskar.\n<|end_of_documents|>\n\n"
    searched = _trajectory("r0", [1], [([5], True)])
    searched.segments = [(" <|begin_of_query|>Drake born<|end_of_query|>", True), (docs, False)]
    searched.response_text = (
        " <|begin_of_query|>Drake born<|end_of_query|>"
        + docs
        + "</think>\n\n<answer> Oskar </answer>"
    )
    searched.n_searches, searched.stop_reason = 1, "answer"
    silent = _trajectory("r0", [1], [([6, 7], True)])
    silent.response_text, silent.stop_reason = " hmm <answer> Tallow </answer>", "answer"
    cut = _trajectory("r1", [1], [([8], True)])
    cut.response_text, cut.stop_reason = " I think", "segment_budget"
    reward = build_reward(RewardConfig(name="stage1"), TAGS)
    trajectories = [searched, silent, cut]
    results = [reward(t.response_text, t.golds) for t in trajectories]
    m = rollout_metrics(trajectories, results, TAGS, RewardConfig())
    assert m["reward/total"] == pytest.approx(1 / 3)
    assert m["reward/format_valid"] == pytest.approx(1 / 3)
    assert m["search/calls_per_sample"] == pytest.approx(1 / 3)
    assert m["search/answer_in_documents"] == 1.0
    assert m["search/answered_without_search"] == pytest.approx(1 / 3)
    assert m["format/violation/think_end_missing"] == pytest.approx(2 / 3)
    assert m["format/violation/answer_missing"] == pytest.approx(1 / 3)
    assert m["rollout/stop/answer"] == pytest.approx(2 / 3)
    assert m["rollout/stop/segment_budget"] == pytest.approx(1 / 3)
    assert m["response_length/mean"] == pytest.approx(4 / 3)


def test_rollout_metrics_read_the_format_report_the_reward_carries():
    t = _trajectory("r0", [1], [([5], True)])
    t.response_text, t.stop_reason = " hmm <answer> Tallow </answer>", "answer"
    result = build_reward(RewardConfig(name="stage2"), TAGS)(t.response_text, t.golds)
    assert result.format == check_format(t.response_text, TAGS, rules=RewardConfig())
    carried = dataclasses.replace(result.format, valid=True, violations=[])
    m = rollout_metrics([t], [dataclasses.replace(result, format=carried)], TAGS, RewardConfig())
    assert m["reward/format_valid"] == 1.0  # the carried report, not a second check's verdict
    assert not any(key.startswith("format/violation/") for key in m)
    bare = dataclasses.replace(result, format=None)  # a reward that carries none: checked here
    assert rollout_metrics([t], [bare], TAGS, RewardConfig())["reward/format_valid"] == 0.0


def test_answer_in_documents_matches_whole_normalised_words():
    t = _trajectory("r", [1], [], golds=["Oskar"])
    t.segments = [("(1)Oskarsson lived here", False)]
    assert not answer_in_documents(t, "squad")
    t.segments = [("(1)The town of OSKAR.", False)]
    assert answer_in_documents(t, "squad")


def test_paired_difference_and_its_interval():
    ours = [{"id": str(i), "f1": 1.0 if i % 2 else 0.5} for i in range(40)]
    theirs = [{"id": str(i), "f1": 0.5} for i in range(40)]
    out = paired_difference(ours, theirs, "f1")
    assert out["difference"] == pytest.approx(0.25)
    assert 0.1 < out["ci95_low"] < 0.25 < out["ci95_high"] < 0.4
    same = paired_difference(theirs, theirs, "f1")
    assert same["ci95_low"] == same["ci95_high"] == 0.0
    with pytest.raises(ValueError):
        paired_difference(ours, [{"id": "x", "f1": 0.0}], "f1")


def test_question_sample_is_seeded_and_fixed():
    records = list(range(100))
    assert sample_questions(records, 10, 0) == sample_questions(records, 10, 0)
    assert sample_questions(records, 10, 0) != sample_questions(records, 10, 1)
    assert sample_questions(records, 500, 0) == records


def test_shared_prefix_gives_the_full_rows_logprobs_and_gradients(tiny_model):
    torch.manual_seed(1)
    prefix = torch.randint(0, 100, (1, 6))
    ids = torch.cat([prefix.expand(3, -1), torch.randint(0, 100, (3, 5))], dim=1)
    attention = torch.ones_like(ids)
    attention[2, 9:] = 0  # right padding
    targets = torch.zeros_like(ids)
    targets[:, 8:] = 1
    targets[2, 9:] = 0
    model = copy.deepcopy(tiny_model).train()
    runs = []
    for shared in (0, 6):
        model.zero_grad()
        values, _ = sequence_logprobs(model, ids, attention, targets, shared_prefix=shared)
        values.sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        runs.append((values.detach(), grads))
    (plain, plain_grads), (shared, shared_grads) = runs
    assert torch.allclose(plain, shared, atol=1e-5)
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, shared_grads[name], atol=1e-5), name
    with pytest.raises(ValueError, match="shared_prefix"):
        sequence_logprobs(model, ids, attention, targets, shared_prefix=9)


def test_collate_finds_the_prompts_shared_prefix():
    a = _trajectory("r0", [1, 2, 3, 4], [([10], True)])
    b = _trajectory("r1", [1, 2, 3, 9, 9], [([11], True)])
    assert collate([a, b], [0.0, 1.0], pad_id=0).shared_prefix == 3
    c = _trajectory("r2", [1, 2], [([12], True)])
    assert collate([a, b, c], [0.0, 1.0, 0.0], pad_id=0).shared_prefix == 1
