"""Search-interleaved rollouts in token space (R1-Searcher, arXiv:2503.05592, section 2).

Each active trajectory samples until the end-of-query stop string, the answer end tag, EOS or
its segment budget. The queries of one turn go to the retriever as one batch; the engine then
appends the end-of-query tag (only when the backend did not keep it) and the document block of
`recipe.prompts.format_documents`, tokenized on its own, and generation continues. The sampled
ids are kept as sampled; the action mask is written while pieces are appended (1 sampled,
0 inserted), through `recipe.prompts.render_segments`, the helper transcript writers use too.

`rollout.search` off / once are the baselines' modes: no query stop string, so nothing the model
writes is searched, and (once) the passages retrieved for the question are listed in the prompt.

Run `python -m demo` for a batch on a tiny model with the real BM25 retriever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from recipe.generation.base import Generation, GenerationBackend, GenerationRequest, SamplingParams
from recipe.prompts import Segment, format_documents, question_prompt_ids, render_segments
from recipe.retrieval.base import Retriever
from recipe.schema import ModelConfig, RetrieverConfig, RolloutConfig, RunConfig, TagsConfig
from rewards.metrics import normalize_answer


class QuestionRecord(Protocol):
    """What the engine reads from a record (data_filtering.records.QARecord has more)."""

    id: str
    question: str
    answers: list[str]


# Why a trajectory ended.
STOP_EOS = "eos"  # the model ended its turn
STOP_ANSWER = "answer"  # the answer end tag (rollout.stop_at_answer_end)
STOP_SEGMENT_BUDGET = "segment_budget"  # max_segment_tokens without a query or an end
STOP_RESPONSE_CAP = "response_cap"  # max_response_tokens reached (or the documents would pass it)
STOP_MAX_RETRIEVALS = "max_retrievals"  # a query beyond max_retrievals (on_max_retrievals=keep)
STOP_MALFORMED_QUERY = "malformed_query"  # end-of-query tag with no query text before it


@dataclass
class Trajectory:
    record_id: str
    sample_index: int  # which of the samples_per_prompt rollouts of this record
    question: str
    golds: list[str]  # the record's gold answers: the label travels with the trajectory
    prompt_ids: list[int]
    response_ids: list[int] = field(default_factory=list)
    action_mask: list[int] = field(default_factory=list)  # 1 sampled, 0 inserted
    logprobs: list[float] = field(default_factory=list)  # sampler log-probs, 0.0 where inserted
    segments: list[Segment] = field(default_factory=list)  # (sampled ids | inserted text, is_model)
    queries: list[str] = field(default_factory=list)  # every query the model wrote
    retrieved_ids: list[list[str]] = field(default_factory=list)  # per executed search
    prompt_passages: list[str] = field(default_factory=list)  # rollout.search=once: in the prompt
    n_searches: int = 0
    stop_reason: str = ""
    response_text: str = ""  # the response decoded for rewards and logs, without a final EOS

    @property
    def inserted_texts(self) -> list[str]:
        return [piece for piece, is_model in self.segments if not is_model]


class RolloutEngine:
    def __init__(
        self,
        backend: GenerationBackend,
        retriever: Retriever,
        tags: TagsConfig,
        rollout_cfg: RolloutConfig,
        *,
        topk: int = RetrieverConfig().topk,
        prompt_style: str = ModelConfig().prompt_style,
    ):
        self.backend = backend
        self.tokenizer = backend.tokenizer
        self.retriever = retriever
        self.tags = tags
        self.cfg = rollout_cfg
        self.topk = topk
        self.prompt_style = prompt_style
        self._calls = 0  # successive rollout() calls draw fresh seeds from the same base seed

    def rollout(self, records: Sequence[QuestionRecord]) -> list[Trajectory]:
        """samples_per_prompt trajectories per record, grouped by record, in record order."""
        references: list[list] = [[] for _ in records]
        if self.cfg.search == "once":  # standard RAG: one search per question, with its text
            found = self.retriever.search([r.question for r in records], k=self.topk)
            references = [[hit.passage for hit in hits] for hits in found]
        trajectories = [
            self._new_trajectory(record, sample, passages)
            for record, passages in zip(records, references, strict=True)
            for sample in range(self.cfg.samples_per_prompt)
        ]
        size = self.cfg.batch_size
        for chunk, start in enumerate(range(0, len(trajectories), size)):
            self._rollout_batch(trajectories[start : start + size], chunk)
        self._calls += 1
        self.backend.reset()  # free the kept cache before the trainer needs the memory
        return trajectories

    def state_dict(self) -> dict:
        """The sampler's state: the seed of every later call derives from it (resume)."""
        return {"calls": self._calls}

    def load_state_dict(self, state: dict) -> None:
        self._calls = int(state["calls"])

    def _new_trajectory(
        self, record: QuestionRecord, sample: int, references: Sequence = ()
    ) -> Trajectory:
        prompt_ids = question_prompt_ids(
            record.question,
            self.tokenizer,
            self.tags,
            self.prompt_style,
            search=self.cfg.search,
            references=references,
            doc_template=self.cfg.doc_template,
        )
        return Trajectory(
            record_id=str(record.id),
            sample_index=sample,
            question=record.question,
            golds=list(record.answers),
            prompt_ids=prompt_ids,
            retrieved_ids=[[p.id for p in references]] if references else [],
            prompt_passages=[p.contents for p in references],
        )

    def _seed(self, chunk: int, turn: int) -> int:
        state = np.random.SeedSequence([self.cfg.seed, self._calls, chunk, turn])
        return int(state.generate_state(1)[0])

    def _rollout_batch(self, batch: list[Trajectory], chunk: int) -> None:
        active = list(batch)
        turn = 0
        while active:
            requests = [self._request(t) for t in active]
            params = SamplingParams(self.cfg.temperature, self.cfg.top_p, self._seed(chunk, turn))
            generations = self.backend.generate(requests, params)
            searching: list[tuple[Trajectory, Generation, str]] = []
            for trajectory, generation in zip(active, generations, strict=True):
                self._append(trajectory, generation.token_ids, True, generation.logprobs)
                query = self._after_segment(trajectory, generation)
                if query is not None:
                    searching.append((trajectory, generation, query))
            if searching:
                self._insert_documents(searching)
            active = [t for t in active if not t.stop_reason]
            turn += 1
        for trajectory in batch:
            # The closing EOS token is the model's turn end, not part of the text scored.
            ids = trajectory.response_ids
            if trajectory.stop_reason == STOP_EOS:
                ids = ids[:-1]
            trajectory.response_text = self.tokenizer.decode(ids, skip_special_tokens=False)

    def _request(self, trajectory: Trajectory) -> GenerationRequest:
        room = self.cfg.max_response_tokens - len(trajectory.response_ids)
        stops = []
        answer_turn = (
            self.cfg.on_max_retrievals == "force_answer"
            and trajectory.n_searches >= self.cfg.max_retrievals
        )
        if not answer_turn and self.cfg.search == "agent":
            stops.append(self.tags.end_query)
        if self.cfg.stop_at_answer_end:
            stops.append(self.tags.answer_end)
        return GenerationRequest(
            prompt_ids=trajectory.prompt_ids + trajectory.response_ids,
            max_new_tokens=min(self.cfg.max_segment_tokens, room),
            stop=tuple(stops),
        )

    def _append(
        self,
        trajectory: Trajectory,
        piece: str | Sequence[int],
        is_model: bool,
        logprobs: Sequence[float] | None = None,
        rendered: tuple[list[int], list[int]] | None = None,
    ) -> None:
        """The one place response tokens and their mask grow (via render_segments)."""
        ids, mask = rendered or render_segments(self.tokenizer, [(piece, is_model)])
        trajectory.segments.append((piece if isinstance(piece, str) else list(piece), is_model))
        trajectory.response_ids.extend(ids)
        trajectory.action_mask.extend(mask)
        trajectory.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(ids))

    def _after_segment(self, trajectory: Trajectory, generation: Generation) -> str | None:
        """Sets the stop reason of a finished trajectory, or returns the query to search."""
        full = len(trajectory.response_ids) >= self.cfg.max_response_tokens
        if generation.finish_reason == "eos":
            trajectory.stop_reason = STOP_EOS
        elif generation.finish_reason == "length":
            trajectory.stop_reason = STOP_RESPONSE_CAP if full else STOP_SEGMENT_BUDGET
        elif generation.stop_string == self.tags.answer_end:
            trajectory.stop_reason = STOP_ANSWER
        else:
            query = self._read_query(generation.token_ids)
            if query is None:
                trajectory.stop_reason = STOP_MALFORMED_QUERY
                return None
            trajectory.queries.append(query)
            if trajectory.n_searches >= self.cfg.max_retrievals:
                trajectory.stop_reason = STOP_MAX_RETRIEVALS
                return None
            if full:
                trajectory.stop_reason = STOP_RESPONSE_CAP
                return None
            return query
        return None

    def _read_query(self, segment_ids: Sequence[int]) -> str | None:
        """The text after the last begin-of-query tag of this segment, up to the end tag.

        Decoding only reads the query; the ids stay as sampled. Only the model's own segment
        is read, so query tags inside inserted passages can never trigger a search.
        """
        text = self.tokenizer.decode(segment_ids, skip_special_tokens=False)
        start = text.rfind(self.tags.begin_query)
        if start < 0:
            return None
        query = text[start + len(self.tags.begin_query) :]
        end = query.find(self.tags.end_query)
        query = (query if end < 0 else query[:end]).strip()
        return query or None

    def _insert_documents(self, searching: list[tuple[Trajectory, Generation, str]]) -> None:
        hits = self.retriever.search([query for _, _, query in searching], k=self.topk)
        for (trajectory, generation, _), found in zip(searching, hits, strict=True):
            passages = [hit.passage for hit in found]
            text = format_documents(passages, self.tags, self.cfg.doc_template)
            if not self._kept_stop(generation):
                text = self.tags.end_query + text
            rendered = render_segments(self.tokenizer, [(text, False)])
            if len(trajectory.response_ids) + len(rendered[0]) >= self.cfg.max_response_tokens:
                trajectory.stop_reason = STOP_RESPONSE_CAP  # no room to read or to answer
                continue
            self._append(trajectory, text, False, rendered=rendered)
            trajectory.n_searches += 1
            trajectory.retrieved_ids.append([p.id for p in passages])

    def _kept_stop(self, generation: Generation) -> bool:
        """Whether the sampled ids already hold the end-of-query tag (vLLM may strip it)."""
        text = self.tokenizer.decode(generation.token_ids, skip_special_tokens=False)
        return self.tags.end_query in text


def build_rollout_engine(
    run_cfg: RunConfig,
    backend: GenerationBackend,
    retriever: Retriever,
    rollout: RolloutConfig | None = None,
) -> RolloutEngine:
    """The engine a run config describes around a backend (`recipe.generation.build_backend`
    makes the configured one). `rollout` stands in for the config's rollout section where a
    caller samples otherwise: a rank's seed, a greedy evaluation, one sample per question."""
    return RolloutEngine(
        backend,
        retriever,
        run_cfg.tags,
        rollout if rollout is not None else run_cfg.rollout,
        topk=run_cfg.retriever.topk,
        prompt_style=run_cfg.model.prompt_style,
    )


def answer_in_documents(trajectory: Trajectory, profile: str) -> bool:
    """Whether a normalised gold answer occurs in the normalised passages the model read
    (inserted after its queries, or listed in its prompt by rollout.search=once)."""
    texts = [*trajectory.prompt_passages, *trajectory.inserted_texts]
    documents = " ".join(normalize_answer(t, profile) for t in texts)
    golds = [normalize_answer(g, profile) for g in trajectory.golds]
    return any(g and f" {g} " in f" {documents} " for g in golds)


def format_trajectory(trajectory: Trajectory, tokenizer, open_mark: str, close_mark: str) -> str:
    """The response with every inserted (mask 0) span wrapped in the given marks."""
    parts = []
    for piece, is_model in trajectory.segments:
        text = piece if isinstance(piece, str) else tokenizer.decode(piece)
        parts.append(text if is_model else f"{open_mark}{text}{close_mark}")
    return "".join(parts)
