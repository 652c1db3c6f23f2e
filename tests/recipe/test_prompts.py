from __future__ import annotations

import pytest

from recipe.prompts import (
    SYSTEM_PROMPT,
    build_prompt,
    encode_insertion,
    encode_prompt,
    format_documents,
    render_segments,
    system_prompt,
)
from recipe.retrieval.base import Passage
from recipe.schema import TagsConfig

# R1-Searcher's base-model prompt as published (arXiv:2503.05592; released training code).
R1SEARCHER_BASE_PROMPT = """The User asks a question, and the Assistant solves it.
The Assistant first thinks about the reasoning process in the mind and then provides the User with the final answer.
The output format of reasoning process and final answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "<think> reasoning process here </think>\n\n<answer> final answer here </answer>".
During the thinking process, **the Assistant can perform searching** for uncertain knowledge if necessary with the format of "<|begin_of_query|> search query (only list keywords, such as **"keyword_1 keyword_2 ..."**)<|end_of_query|>". **A query must involve only a single triple**.
Then, the search system will provide the Assistant with the retrieval information with the format of "<|begin_of_documents|> ...search results... <|end_of_documents|>".

User:{question}
Assistant: <think>"""

PASSAGES = [
    Passage("a", "Velmora", "Velmora is a river port."),
    Passage("b", "Oskar", "Oskar is a hill town."),
]


def test_base_prompt_is_r1searcher_verbatim():
    question = "Who founded {Velmora}?"  # braces in a question must survive formatting
    prompt = build_prompt(question, None, TagsConfig(), "base")
    assert prompt == R1SEARCHER_BASE_PROMPT.replace("{question}", question)
    assert prompt.endswith("Assistant: <think>")


def test_prompts_take_their_tags_from_config():
    tags = TagsConfig(profile="searchr1")
    prompt = build_prompt("q", None, tags, "base")
    assert "<search> search query" in prompt and "<information> ...search results..." in prompt
    assert "<|begin_of_query|>" not in prompt
    assert "<search>" in system_prompt(tags) and "<|begin_of_query|>" in SYSTEM_PROMPT


def test_instruct_prompt_uses_the_chat_template(smollm2_tokenizer):
    tags = TagsConfig()
    prompt = build_prompt("Who founded Velmora?", smollm2_tokenizer, tags, "instruct")
    assert prompt.startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n")
    assert "<|im_start|>user\nWho founded Velmora?<|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n<think>")
    ids = encode_prompt(smollm2_tokenizer, prompt, "instruct")
    assert ids.count(smollm2_tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3


def test_unknown_style_is_an_error():
    with pytest.raises(ValueError, match="prompt style"):
        build_prompt("q", None, TagsConfig(), "chatty")


def test_document_block_has_r1searcher_layout():
    block = format_documents(PASSAGES, TagsConfig())
    assert block == (
        "\n\n<|begin_of_documents|>\n"
        "(1)Velmora\nVelmora is a river port.\n"
        "(2)Oskar\nOskar is a hill town.\n"
        "<|end_of_documents|>\n\n"
    )
    custom = format_documents(
        PASSAGES, TagsConfig(profile="searchr1"), "Doc {rank}({title}) {body}"
    )
    assert custom == (
        "\n\n<information>\nDoc 1(Velmora) Velmora is a river port.\n"
        "Doc 2(Oskar) Oskar is a hill town.\n</information>\n\n"
    )
    assert format_documents([], TagsConfig()) == (
        "\n\n<|begin_of_documents|>\nNone<|end_of_documents|>\n\n"
    )


def test_insertions_are_tokenized_on_their_own(smollm2_tokenizer):
    tok = smollm2_tokenizer
    block = format_documents(PASSAGES, TagsConfig())
    ids = encode_insertion(tok, block)
    assert ids == tok(block, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == block
    # The classic edge: a trailing blank line merges with what follows when encoded together,
    # so pieces encoded separately differ from the joined string; render_segments never joins.
    model_text = "I should search.\n"
    joined = tok(model_text + block, add_special_tokens=False)["input_ids"]
    ids, mask = render_segments(tok, [(model_text, True), (block, False)])
    assert ids != joined
    assert ids == encode_insertion(tok, model_text) + encode_insertion(tok, block)
    assert mask == [1] * len(encode_insertion(tok, model_text)) + [0] * len(
        encode_insertion(tok, block)
    )


def test_render_segments_keeps_token_ids_as_given(smollm2_tokenizer):
    sampled = [5, 6, 7]
    ids, mask = render_segments(smollm2_tokenizer, [(sampled, True), ("\n\n", False), ([8], True)])
    inserted = encode_insertion(smollm2_tokenizer, "\n\n")
    assert ids == sampled + inserted + [8]
    assert mask == [1, 1, 1] + [0] * len(inserted) + [1]
