"""Cold-start data: loss mask, tokenization identical to the rollout engine's, behaviour mix,
and the shared-prefix loss equal to the plain one."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from miniwiki.base_config import BehaviourMix, ColdStartConfig
from miniwiki.coldstart import batch_loss_sum, prefix_cache, train
from miniwiki.coldstart_data import (
    Example,
    encode_transcript,
    micro_batches,
    mixed_steps,
    shared_prefix_length,
    warmup_questions,
)
from miniwiki.transcripts import TranscriptWriter, behaviour_counts, write_transcripts
from recipe.generation.hf import HFBackend
from recipe.generation.scripted import ScriptedContinuation
from recipe.prompts import build_prompt, question_prompt_ids
from recipe.retrieval.bm25 import BM25Retriever
from recipe.retrieval.corpus import read_corpus
from recipe.rollout import STOP_ANSWER, RolloutEngine
from recipe.schema import ModelConfig, RolloutConfig, TagsConfig

TAGS = TagsConfig()
TOPK = 3
DOC_TEMPLATE = RolloutConfig().doc_template
STYLE = "instruct"
MIX = BehaviourMix(direct=0.5, search=0.25, poor_query=0.15, read=0.1)
N_TRANSCRIPTS = 20


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def tokenizer(smollm2_tokenizer):
    return smollm2_tokenizer


@pytest.fixture(scope="module")
def warmup_retriever(small_built_dir):
    return BM25Retriever(list(read_corpus(small_built_dir / "warmup" / "corpus.jsonl")))


@pytest.fixture(scope="module")
def transcripts(small_cfg, small_built_dir, warmup_retriever):
    writer = TranscriptWriter(
        warmup_retriever, TAGS, ColdStartConfig().templates, TOPK, DOC_TEMPLATE
    )
    questions = warmup_questions(small_cfg, "train")
    out, _ = write_transcripts(questions, writer, MIX, N_TRANSCRIPTS, 4, random.Random(0))
    return out


@pytest.fixture(scope="module")
def examples(transcripts, tokenizer):
    return [encode_transcript(tokenizer, t, TAGS, STYLE) for t in transcripts]


def _runs(ids, mask, value):
    """Maximal runs of ids whose mask equals `value`."""
    runs, current = [], []
    for token, m in zip(ids, mask, strict=True):
        if m == value:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def test_behaviour_counts_follow_the_mix():
    assert behaviour_counts(BehaviourMix(0.75, 0.2, 0.05, 0), 400) == {
        "direct": 300,
        "search": 80,
        "poor_query": 20,
        "read": 0,
    }
    # Shares are normalised; rounding hands the remainder to the largest fractions.
    assert behaviour_counts(BehaviourMix(6, 3, 1, 2), 14) == {
        "direct": 7,
        "search": 4,
        "poor_query": 1,
        "read": 2,
    }
    assert sum(behaviour_counts(BehaviourMix(0.6, 0.3, 0.1, 0.2), 33).values()) == 33
    with pytest.raises(ValueError):
        behaviour_counts(BehaviourMix(0, 0, 0, 0), 10)


def test_every_step_holds_the_behaviours_in_the_mix_ratio():
    """Each behaviour is dealt evenly over the steps (no all-direct or all-search step)."""
    counts = {"direct": 60, "search": 15, "poor_query": 5}
    lengths = {"direct": 60, "search": 1000, "poor_query": 1400}
    examples = [
        Example([0] * lengths[b], [0] * (lengths[b] - 1) + [1], b)
        for b, n in counts.items()
        for _ in range(n)
    ]
    steps = mixed_steps(examples, 0, 2000, random.Random(0))
    assert sorted(i for step in steps for i in step) == list(range(len(examples)))
    assert len(steps) == -(-sum(len(e) for e in examples) // 2000)
    for behaviour, n in counts.items():
        per_step = [sum(examples[i].behaviour == behaviour for i in step) for step in steps]
        assert max(per_step) - min(per_step) <= 1, behaviour
        assert sum(per_step) == n
    for step in steps:
        batches = micro_batches(step, examples, 0, 2048)
        assert sorted(i for b in batches for i in b) == sorted(step)
        for b in batches:
            width = max(len(examples[i]) for i in b)
            assert len(b) == 1 or len(b) * width <= 2048


def test_transcripts_follow_the_mix_and_search_each_hop(transcripts):
    counts = behaviour_counts(MIX, N_TRANSCRIPTS)
    for behaviour, n in counts.items():
        assert sum(t.behaviour == behaviour for t in transcripts) == n
    assert len({t.question for t in transcripts}) == N_TRANSCRIPTS
    for t in transcripts:
        docs = [s for s, is_model in t.segments if not is_model]
        assert len(docs) == t.n_searches
        if t.behaviour == "direct":
            assert t.n_searches == 0
        else:
            assert t.n_searches >= 2  # every miniwiki question needs two facts at least
            # The answer is copied from documents that contain it.
            assert t.answer in {"yes", "no"} or any(t.answer in d for d in docs)
        if t.behaviour != "direct" and t.qtype.endswith("/comparison"):
            # The plan names both entities; both found values are set side by side before the
            # conclusion.
            assert " and for " in t.segments[0][0]
            conclusion = t.segments[-1][0]
            assert conclusion.count("Comparing") == 1
            assert conclusion.index("Comparing") < conclusion.index("So the answer is")
        if t.behaviour == "poor_query":
            # The poor first query leaves out the entity the second one names.
            assert t.queries[0] in t.queries[1] and t.queries[0] != t.queries[1]
    searching = [t for t in transcripts if t.behaviour != "direct"]
    assert any(t.qtype.endswith("/comparison") for t in searching)
    assert any(not t.qtype.endswith("comparison") for t in searching)


def test_a_hop_is_queried_and_restated_in_the_documents_own_words(small_cfg, transcripts):
    """Query: subject and the relation's cue words; reply: the cue and the value exactly as the
    documents just inserted hold them, so reading is a copy of what follows the cue. A direct
    answer recalls the same statements from 'memory'."""
    hops_of = {q.question: q.hops for q in warmup_questions(small_cfg, "train")}
    cued = 0
    for t in transcripts:
        hops = hops_of[t.question]
        if t.behaviour == "direct":
            # A direct think recalls the same facts in the same words, without documents.
            think = t.segments[0][0]
            assert all(f"{hop.subject} {hop.statement}" in think for hop in hops)
            continue
        if t.behaviour == "poor_query":
            continue
        docs = [text for text, is_model in t.segments if not is_model]
        replies = [text for text, _ in t.segments[2::2]]
        assert len(hops) == len(docs) == len(replies) == len(t.queries)
        for hop, query, doc, reply in zip(hops, t.queries, docs, replies, strict=True):
            assert query == f"{hop.subject} {hop.keywords}"
            assert reply.startswith(f"So {hop.subject} {hop.statement}. ")
            if hop.cue:
                assert hop.statement in doc
                cued += 1
    assert cued >= 4


def test_loss_mask_covers_exactly_the_assistants_tokens(transcripts, examples, tokenizer):
    for t, e in zip(transcripts, examples, strict=True):
        prompt = build_prompt(t.question, tokenizer, TAGS, STYLE)
        model_text = [s for s, is_model in t.segments if is_model]
        inserted = [s for s, is_model in t.segments if not is_model]
        trained = [tokenizer.decode(run) for run in _runs(e.ids, e.loss_mask, 1)]
        untrained = [tokenizer.decode(run) for run in _runs(e.ids, e.loss_mask, 0)]
        if t.behaviour == "read":
            # The words that choose to search are not trained; the rest of the query is.
            assert t.untrained_prefix == " I need to search for"
            assert model_text[0].startswith(t.untrained_prefix)
            prompt += t.untrained_prefix
            model_text[0] = model_text[0][len(t.untrained_prefix) :]
        else:
            assert t.untrained_prefix == ""
        # The last trained span ends with the end-of-turn token the model must learn to emit.
        assert trained[:-1] == model_text[:-1]
        assert trained[-1] == model_text[-1] + tokenizer.eos_token
        assert untrained == [prompt] + inserted
        assert all(TAGS.begin_docs not in span for span in trained)
        assert e.loss_mask[-1] == 1 and e.ids[-1] == tokenizer.eos_token_id


def test_segment_wise_ids_differ_from_whole_text_tokenization(transcripts, examples, tokenizer):
    """Tokenizing whole text is a real trap for this tokenizer: the same text tokenized as one string
    splits differently at the inserted blocks' edges, so a transcript must be built piecewise."""
    differ = 0
    for t, e in zip(transcripts, examples, strict=True):
        if t.behaviour == "direct":
            continue
        text = tokenizer.decode(e.ids)
        whole = tokenizer(text, add_special_tokens=False)["input_ids"]
        differ += whole != e.ids
    assert differ > 0


def test_transcripts_tokenize_as_the_rollout_engine_records_them(
    transcripts, examples, tokenizer, warmup_retriever
):
    """A real engine run whose model is made to write each transcript's own text (forced
    decoding), against the same retriever: its ids and action mask equal the example's."""
    chosen = [i for i, t in enumerate(transcripts) if t.behaviour != "direct"][:2]
    chosen += [next(i for i, t in enumerate(transcripts) if t.behaviour == "direct")]
    records = [transcripts[i] for i in chosen]
    prompts = {tuple(question_prompt_ids(t.question, tokenizer, TAGS, STYLE)): t for t in records}

    def script(context_ids):
        context = list(context_ids)
        prompt = next(p for p in prompts if tuple(context[: len(p)]) == p)
        done = tokenizer.decode(context[len(prompt) :]).count(TAGS.begin_docs)
        segments = [s for s, is_model in prompts[prompt].segments if is_model]
        return tokenizer(segments[done], add_special_tokens=False)["input_ids"]

    from demo.world import tiny_policy

    model = tiny_policy(tokenizer, seed=0)
    backend = HFBackend(model, tokenizer, [ScriptedContinuation(script, free_tokens=0)])
    cfg = RolloutConfig(
        samples_per_prompt=1, max_segment_tokens=256, max_response_tokens=4096, max_retrievals=8
    )
    engine = RolloutEngine(backend, warmup_retriever, TAGS, cfg, topk=TOPK, prompt_style=STYLE)

    @dataclasses.dataclass
    class Record:
        id: str
        question: str
        answers: list

    trajectories = engine.rollout(
        [Record(str(i), t.question, [t.answer]) for i, t in zip(chosen, records, strict=True)]
    )
    for i, trajectory in zip(chosen, trajectories, strict=True):
        example = examples[i]
        assert trajectory.stop_reason == STOP_ANSWER
        assert trajectory.queries == transcripts[i].queries
        # The engine stops at the answer end tag; the transcript adds the end-of-turn token.
        assert trajectory.prompt_ids + trajectory.response_ids == example.ids[:-1]
        n_prompt = len(trajectory.prompt_ids)
        assert trajectory.action_mask == example.loss_mask[n_prompt:-1]


def test_shared_prefix_loss_and_gradients_equal_the_plain_ones(examples, tokenizer):
    from demo.world import tiny_policy

    rows = [e for e in examples if e.behaviour == "direct"][:2]
    rows += [e for e in examples if e.behaviour != "direct"][:2]
    prefix = shared_prefix_length(rows)
    assert prefix > 100  # the system turn is shared by every prompt
    model = tiny_policy(tokenizer, seed=1).float().train()

    def loss_and_grads(prefix_ids):
        model.zero_grad()
        loss, n = batch_loss_sum(model, rows, prefix_ids, tokenizer.pad_token_id)
        loss.backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        return loss.item(), n, grads

    def step_loss_and_grads(prefix_ids):
        """As the trainer does: the prefix once, two forward passes, one backward."""
        model.zero_grad()
        shared = prefix_cache(model, prefix_ids)
        first, n_first = batch_loss_sum(model, rows[:2], prefix_ids, tokenizer.pad_token_id, shared)
        second, n_second = batch_loss_sum(
            model, rows[2:], prefix_ids, tokenizer.pad_token_id, shared
        )
        (first + second).backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        return (first + second).item(), n_first + n_second, grads

    plain_loss, plain_n, plain_grads = loss_and_grads([])
    for shared_loss, shared_n, shared_grads in (
        loss_and_grads(rows[0].ids[:prefix]),
        step_loss_and_grads(rows[0].ids[:prefix]),
    ):
        assert shared_n == plain_n == sum(sum(e.loss_mask) for e in rows)
        assert shared_loss == pytest.approx(plain_loss, rel=1e-4)
        assert shared_grads.keys() == plain_grads.keys()
        for name, grad in plain_grads.items():
            torch.testing.assert_close(shared_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)


def test_frozen_layers_stay_fixed_and_the_rest_trains(examples, tokenizer):
    from demo.world import tiny_policy

    model = tiny_policy(tokenizer, seed=2, layers=3).float()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    rows = [e for e in examples if e.behaviour == "direct"][:2]
    rows += [e for e in examples if e.behaviour == "read"][:1]
    cfg = ColdStartConfig(frozen_layers=2, step_tokens=10**6, warmup_steps=1, lr=1e-3)
    stats = train(model, rows, cfg, tokenizer.pad_token_id)
    assert stats.steps == 1 and stats.trained_tokens == sum(sum(e.loss_mask) for e in rows)
    changed = {k for k, p in model.named_parameters() if not torch.equal(p, before[k])}
    fixed = {"model.embed_tokens.weight"} | {
        k for k in before if k.startswith(("model.layers.0.", "model.layers.1."))
    }
    assert changed and not changed & fixed
    assert {k for k in before if k.startswith("model.layers.2.")} <= changed
    with pytest.raises(ValueError, match="has 3 layers"):
        train(model, rows, dataclasses.replace(cfg, frozen_layers=4), tokenizer.pad_token_id)


@pytest.mark.slow
def test_make_base_end_to_end_on_a_tiny_world(small_cfg, small_built_dir, tmp_path, capsys):
    """The real pipeline shrunk: GGUF conversion, a few transcripts, a few steps, a small gate;
    the second run skips the cold start and reports the recorded gate."""
    import json

    from miniwiki.base import COLDSTART_REPORT, GATE_REPORT, main
    from miniwiki.presets import SHIPPED_YAML, tiny_overrides
    from recipe.policy import load_policy

    out = tmp_path / "base"
    argv = ["--config", str(SHIPPED_YAML), *tiny_overrides(small_cfg.out_dir)]
    argv += [
        f"coldstart.source_dir={tmp_path / 'smollm2'}",
        f"coldstart.out_dir={out}",
        "coldstart.transcripts=8",
        "coldstart.max_hops=2",
        "gate.questions=4",
        "gate.samples_per_question=1",
    ]
    first = main(argv)
    coldstart = json.loads((out / COLDSTART_REPORT).read_text())
    gate = json.loads((out / GATE_REPORT).read_text())
    assert first == (0 if gate["passed"] else 1)
    assert sum(coldstart["transcripts"].values()) == 8
    assert coldstart["train"]["steps"] >= 1 and coldstart["train"]["trained_tokens"] > 0
    assert gate["metrics"]["rollouts"] == 4
    assert set(gate["checks"]) == {"search_rate", "format_valid_rate", "cover_em_searched",
                                   "cover_em_gap"}  # fmt: skip
    model, tokenizer = load_policy(ModelConfig(path=str(out), dtype="float32"))
    assert model.config.num_hidden_layers == 30 and tokenizer.eos_token == "<|im_end|>"
    capsys.readouterr()
    assert main(argv) == first
    assert "up to date" in capsys.readouterr().out
