from __future__ import annotations

import pytest
import torch

from recipe.generation.base import GenerationRequest, SamplingParams
from recipe.generation.hf import HFBackend
from recipe.generation.scripted import ScriptedContinuation
from recipe.prompts import encode_insertion

STOP = "<|end_of_query|>"


def _prompts(tok):
    texts = ["Who founded Velmora?", "A much longer question about the Lumen Quartet's leader?"]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def _policy_logprobs(model, context: list[int], n_new: int, temperature: float) -> torch.Tensor:
    """log p(token) of the last n_new tokens, from one unpadded forward over the whole context."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([context])).logits[0].float()
    logprobs = torch.log_softmax(logits / temperature, dim=-1)
    positions = torch.arange(len(context) - n_new - 1, len(context) - 1)
    return logprobs[positions, torch.tensor(context[-n_new:])]


def test_sampler_logprobs_match_the_policy_across_turns(tiny_model, smollm2_tokenizer):
    """Left padding, holes from uneven insertions and the kept cache never change the model."""
    tok = smollm2_tokenizer
    backend = HFBackend(tiny_model, tok)
    params = SamplingParams(temperature=0.7, top_p=0.9, seed=3)
    prompts = _prompts(tok)
    budgets = (3, 6)  # the first row stops early and is parked while the second samples on
    first = backend.generate(
        [GenerationRequest(p, n) for p, n in zip(prompts, budgets, strict=True)], params
    )
    inserts = [
        encode_insertion(tok, "\n\n(1)short\n"),
        encode_insertion(tok, "\n\n(1)a longer passage here\n"),
    ]
    contexts = [p + g.token_ids + ins for p, g, ins in zip(prompts, first, inserts, strict=True)]
    second = backend.generate([GenerationRequest(c, 5) for c in contexts], params)
    assert backend.stats.cache_misses == 0
    # Everything but each row's last sampled token was already in the cache.
    assert backend.stats.reused_tokens == sum(
        len(p) + n - 1 for p, n in zip(prompts, budgets, strict=True)
    )
    for prompt, g1, context, g2 in zip(prompts, first, contexts, second, strict=True):
        full = context + g2.token_ids
        expected = _policy_logprobs(tiny_model, full, len(g2.token_ids), 0.7)
        torch.testing.assert_close(torch.tensor(g2.logprobs), expected, atol=1e-4, rtol=1e-4)
        expected_first = _policy_logprobs(tiny_model, prompt + g1.token_ids, len(g1.token_ids), 0.7)
        torch.testing.assert_close(torch.tensor(g1.logprobs), expected_first, atol=1e-4, rtol=1e-4)
    # Every context token went through the model exactly once.
    unique = sum(len(c) + len(g.token_ids) - 1 for c, g in zip(contexts, second, strict=True))
    assert backend.stats.processed_tokens == unique


def test_identical_prompts_are_encoded_once(tiny_model, smollm2_tokenizer):
    """The samples of one question share the prompt's prefill and still sample independently."""
    shared, other = _prompts(smollm2_tokenizer)
    backend = HFBackend(tiny_model, smollm2_tokenizer)
    out = backend.generate(
        [GenerationRequest(p, 6) for p in (shared, other, shared)], SamplingParams(seed=4)
    )
    assert backend.stats.reused_tokens == len(shared)
    assert out[0].token_ids != out[2].token_ids
    for prompt, g in zip((shared, other, shared), out, strict=True):
        expected = _policy_logprobs(tiny_model, prompt + g.token_ids, 6, 1.0)
        torch.testing.assert_close(torch.tensor(g.logprobs), expected, atol=1e-4, rtol=1e-4)


def test_cache_reuse_does_not_change_samples(tiny_model, smollm2_tokenizer):
    tok = smollm2_tokenizer
    outputs = []
    for reuse in (True, False):
        backend = HFBackend(tiny_model, tok, reuse_cache=reuse)
        params = SamplingParams(temperature=1.0, seed=11)
        prompts = _prompts(tok)
        first = backend.generate([GenerationRequest(p, 4) for p in prompts], params)
        contexts = [p + g.token_ids + [13] for p, g in zip(prompts, first, strict=True)]
        second = backend.generate([GenerationRequest(c, 4) for c in contexts], params)
        outputs.append([g.token_ids for g in first + second])
        assert (backend.stats.reused_tokens > 0) == reuse
    assert outputs[0] == outputs[1]


def test_seeded_sampling_is_reproducible(tiny_model, smollm2_tokenizer):
    prompts = _prompts(smollm2_tokenizer)

    def sample(seed):
        backend = HFBackend(tiny_model, smollm2_tokenizer)
        out = backend.generate(
            [GenerationRequest(p, 8) for p in prompts], SamplingParams(seed=seed)
        )
        return [g.token_ids for g in out]

    assert sample(5) == sample(5)
    assert sample(5) != sample(6)


def test_tiny_top_p_is_greedy(tiny_model, smollm2_tokenizer):
    prompts = _prompts(smollm2_tokenizer)
    backend = HFBackend(tiny_model, smollm2_tokenizer)
    greedy = backend.generate([GenerationRequest(p, 6) for p in prompts], SamplingParams(0.0))
    nucleus = backend.generate(
        [GenerationRequest(p, 6) for p in prompts], SamplingParams(1.0, top_p=1e-9, seed=1)
    )
    assert [g.token_ids for g in greedy] == [g.token_ids for g in nucleus]


def test_stop_string_eos_and_length(tiny_model, smollm2_tokenizer):
    tok = smollm2_tokenizer
    prompts = _prompts(tok)
    stop_ids = tok(f" q{STOP} tail", add_special_tokens=False)["input_ids"]
    eos = [tok.eos_token_id]

    def script(context):
        return stop_ids if context[: len(prompts[0])] == prompts[0] else eos

    backend = HFBackend(tiny_model, tok, [ScriptedContinuation(script, free_tokens=3)])
    out = backend.generate(
        [GenerationRequest(p, 40, (STOP,)) for p in prompts], SamplingParams(seed=0)
    )
    stopped, ended = out
    assert stopped.finish_reason == "stop" and stopped.stop_string == STOP
    assert tok.decode(stopped.token_ids).endswith(STOP)  # kept, and nothing sampled after it
    assert ended.finish_reason == "eos" and ended.token_ids[-1] == tok.eos_token_id
    assert len(ended.token_ids) == 4
    plain = HFBackend(tiny_model, tok).generate(
        [GenerationRequest(p, 7, (STOP,)) for p in prompts], SamplingParams(seed=0)
    )
    assert [g.finish_reason for g in plain] == ["length", "length"]
    assert [len(g.token_ids) for g in plain] == [7, 7]


@pytest.mark.gpu
def test_cuda_matches_the_policy(smollm2_tokenizer):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from demo.world import tiny_policy

    model = tiny_policy(smollm2_tokenizer, seed=0).cuda()
    backend = HFBackend(model, smollm2_tokenizer)
    prompts = _prompts(smollm2_tokenizer)
    params = SamplingParams(temperature=1.0, seed=2)
    first = backend.generate([GenerationRequest(p, 5) for p in prompts], params)
    contexts = [p + g.token_ids + [13, 14] for p, g in zip(prompts, first, strict=True)]
    second = backend.generate([GenerationRequest(c, 5) for c in contexts], params)
    assert backend.stats.cache_misses == 0
    model = model.cpu()
    for context, g in zip(contexts, second, strict=True):
        expected = _policy_logprobs(model, context + g.token_ids, len(g.token_ids), 1.0)
        torch.testing.assert_close(torch.tensor(g.logprobs), expected, atol=1e-3, rtol=1e-3)
