"""Prompts and the layout of inserted text, shared by rollouts and training transcripts.

The base-model prompt is R1-Searcher's (arXiv:2503.05592, appendix "prompt for the base
model"), verbatim as released in its training code (the `**` marks are in the original), with
the tag strings taken from `TagsConfig` so that the Search-R1 profile reuses the same wording.
With the default tags the text is the published one character for character.

Token space (docs/design.md, conventions): the model's sampled ids are kept as they are;
everything the environment inserts is tokenized on its own by `encode_insertion`. `render_segments` joins
pieces the same way the rollout engine does, so a transcript written for supervised training
tokenizes exactly like a rollout of the same text.
"""

from __future__ import annotations

from collections.abc import Sequence

from recipe.retrieval.base import Passage
from recipe.schema import TagsConfig

# R1-Searcher's prompts (train/openrlhf/datasets/prompts_dataset.py), tags as fields, in the
# pieces they share: the task, the answer format, the search instructions.
_BASE_TASK = (
    "The User asks a question, and the Assistant solves it.\n"
    "The Assistant first thinks about the reasoning process in the mind and then provides the "
    "User with the final answer.\n"
)
_SYSTEM_TASK = (
    "You are a helpful assistant.\n"
    "Given a question, you should answer it by first thinking about the reasoning process in "
    "the mind and then providing the final answer.\n"
)
_ANSWER_FORMAT = (
    "The output format of reasoning process and final answer are enclosed within "
    "{think_start} {think_end} and {answer_start} {answer_end} tags, respectively, i.e., "
    '"{think_start} reasoning process here {think_end}\n\n{answer_start} final answer here '
    '{answer_end}".'
)
_BASE_SEARCH = (
    "During the thinking process, **the Assistant can perform searching** for uncertain "
    'knowledge if necessary with the format of "{begin_query} search query (only list '
    'keywords, such as **"keyword_1 keyword_2 ..."**){end_query}". **A query must involve '
    "only a single triple**.\n"
    "Then, the search system will provide the Assistant with the retrieval information with "
    'the format of "{begin_docs} ...search results... {end_docs}".\n'
)
_SYSTEM_SEARCH = (
    "During the thinking process, **you can perform searching for uncertain knowledge** if "
    'necessary with the format of "{begin_query} search query (only list keywords, such as '
    '**"keyword_1 keyword_2 ..."**){end_query}". **A query must involve only a single '
    "triple**.\n"
    "Then, the search system will provide you with the retrieval information with the format "
    'of "{begin_docs} ...search results... {end_docs}".'
)
_BASE_QUESTION = "\nUser:{question}\nAssistant: {think_start}"

# The base-model prompt, and the same instructions addressed to "you" (the chat system prompt).
BASE_PROMPT_TEMPLATE = _BASE_TASK + _ANSWER_FORMAT + "\n" + _BASE_SEARCH + _BASE_QUESTION
SYSTEM_PROMPT_TEMPLATE = _SYSTEM_TASK + _ANSWER_FORMAT + "\n" + _SYSTEM_SEARCH

# The baselines' prompts: the same wording without the search instructions, since
# naive generation and standard RAG cannot search; RAG adds the passages retrieved for the
# question before it (FlashRAG's standard-RAG layout: the references, then the question).
ANSWER_ONLY_BASE_TEMPLATE = _BASE_TASK + _ANSWER_FORMAT + "\n{references}" + _BASE_QUESTION
ANSWER_ONLY_SYSTEM_TEMPLATE = _SYSTEM_TASK + _ANSWER_FORMAT + "{references}"
REFERENCES_TEMPLATE = "The following passages were retrieved for the question:\n{passages}"

# R1-Searcher's insertion layout: "<|end_of_query|>\n\n<|begin_of_documents|>\n(1)...\n
# (2)...\n<|end_of_documents|>\n\n"; "None" stands in for an empty result list.
DOCS_OPEN_PREFIX = "\n\n"
DOCS_CLOSE_SUFFIX = "\n\n"
NO_DOCUMENTS_TEXT = "None"

PROMPT_STYLES = ("base", "instruct")
SEARCH_MODES = ("agent", "off", "once")  # see RolloutConfig.search


def system_prompt(tags: TagsConfig) -> str:
    """The instruct-model system prompt with these tags."""
    return SYSTEM_PROMPT_TEMPLATE.format(**tags.strings())


SYSTEM_PROMPT = system_prompt(TagsConfig())


def base_prompt(question: str, tags: TagsConfig) -> str:
    """R1-Searcher's plain-text prompt; ends with 'Assistant: <think>'."""
    return BASE_PROMPT_TEMPLATE.format(question=question, **tags.strings())


def build_prompt(
    question: str,
    tokenizer,
    tags: TagsConfig,
    style: str,
    search: str = "agent",
    references: Sequence[Passage] = (),
    doc_template: str = "({rank}){text}",
) -> str:
    """The prompt text for one question; always ends with the think-start tag.

    base: `base_prompt`. instruct: the tokenizer's chat template over (system prompt, question)
    with the generation prompt, then the think-start tag (R1-Searcher's chat-model setting).
    `search` "agent" is the recipe's prompt; "off" and "once" drop the search instructions,
    and "once" lists `references` (the passages retrieved for the question) before it.
    """
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {PROMPT_STYLES}")
    if search not in SEARCH_MODES:
        raise ValueError(f"unknown search mode {search!r}; expected one of {SEARCH_MODES}")
    if search == "agent":
        if style == "base":
            return base_prompt(question, tags)
        return _chat_prompt(system_prompt(tags), question, tokenizer, tags)
    listed = ""
    if search == "once":
        passages = "".join(
            format_passage(p, i + 1, doc_template) + "\n" for i, p in enumerate(references)
        )
        listed = REFERENCES_TEMPLATE.format(passages=passages or NO_DOCUMENTS_TEXT + "\n")
    if style == "base":
        return ANSWER_ONLY_BASE_TEMPLATE.format(
            question=question, references=listed, **tags.strings()
        )
    system = ANSWER_ONLY_SYSTEM_TEMPLATE.format(
        references="\n" + listed.rstrip("\n") if listed else "", **tags.strings()
    )
    return _chat_prompt(system, question, tokenizer, tags)


def _chat_prompt(system: str, question: str, tokenizer, tags: TagsConfig) -> str:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    chat = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return chat + tags.think_start


def format_passage(passage: Passage, rank: int, doc_template: str) -> str:
    """One passage of the inserted block.

    Placeholders: {rank} (1-based), {title}, {body} (the passage text), {text} (the title and
    the text as the corpus stores them, `Passage.contents`: "Title\\ntext"). The default
    "({rank}){text}" therefore shows the title, which multi-hop questions need to link hops.
    """
    return doc_template.format(
        rank=rank, title=passage.title, body=passage.text, text=passage.contents
    )


def format_documents(
    passages: Sequence[Passage], tags: TagsConfig, doc_template: str = "({rank}){text}"
) -> str:
    """THE insertion layout: "\\n\\n<|begin_of_documents|>\\n(1)...\\n(2)...\\n<|end_of_documents|>\\n\\n"."""
    if passages:
        body = "".join(
            format_passage(p, i + 1, doc_template) + "\n" for i, p in enumerate(passages)
        )
    else:
        body = NO_DOCUMENTS_TEXT
    return f"{DOCS_OPEN_PREFIX}{tags.begin_docs}\n{body}{tags.end_docs}{DOCS_CLOSE_SUFFIX}"


def encode_insertion(tokenizer, text: str) -> list[int]:
    """Token ids of text the environment inserts: tokenized on its own, no special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_prompt(tokenizer, prompt: str, style: str) -> list[int]:
    """Prompt ids. A chat template already writes the special tokens the model expects; a
    base prompt gets the tokenizer's own (a BOS for Llama 3, none for Qwen2.5 or SmolLM2)."""
    return list(tokenizer(prompt, add_special_tokens=style == "base")["input_ids"])


def question_prompt_ids(
    question: str, tokenizer, tags: TagsConfig, style: str, **prompt_options
) -> list[int]:
    """The ids a rollout of `question` starts from: `build_prompt`, then `encode_prompt`."""
    prompt = build_prompt(question, tokenizer, tags, style, **prompt_options)
    return encode_prompt(tokenizer, prompt, style)


Segment = tuple[str | Sequence[int], bool]


def render_segments(tokenizer, segments: Sequence[Segment]) -> tuple[list[int], list[int]]:
    """Join response pieces into (ids, action_mask) exactly as the rollout engine does.

    Each piece is (text or token ids, is_model_generated). Ids are used as they are; text is
    tokenized on its own with `encode_insertion`. Model-generated pieces get mask 1, inserted
    ones 0. A transcript writer passes the model's text as str (it has no sampled ids), the
    inserted text as str; the engine records its pieces the same way (see Trajectory.segments).
    """
    ids: list[int] = []
    mask: list[int] = []
    for piece, is_model in segments:
        piece_ids = encode_insertion(tokenizer, piece) if isinstance(piece, str) else list(piece)
        ids.extend(piece_ids)
        mask.extend([int(is_model)] * len(piece_ids))
    return ids, mask
