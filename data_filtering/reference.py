"""The reference policy's rollouts: the stages' own engine, model and retriever, built on demand.

`ReferenceRounds(cfg)` is the `RoundRunner` difficulty estimation calls: each call is one
`RolloutEngine.rollout` over a few questions with `filter.rollouts_per_round` samples each,
scored by `recipe.evaluation.scoring.score_trajectory` (the dev evaluation's scoring: the answer of the
last closed answer block under `reward.metric_profile`). The model (in `model.dtype`, as the
trainer's generation copy, on the rank's own device) and the retriever load at the first call, so
a run that finds every question already estimated loads neither; `close` frees the engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from data_filtering.config import FilterRunConfig
from data_filtering.difficulty import ROUND_SEED_STRIDE
from data_filtering.records import QARecord
from data_filtering.results import SampleOutcome
from recipe.evaluation.scoring import score_trajectory
from recipe.generation import build_backend
from recipe.rollout import RolloutEngine, build_rollout_engine


class ReferenceRounds:
    def __init__(
        self,
        cfg: FilterRunConfig,
        *,
        backend_factory: Callable | None = None,
    ):
        # The engine rolls out `rollouts_per_round` samples per question; all else is the stage's.
        self.cfg = dataclasses.replace(
            cfg,
            rollout=dataclasses.replace(
                cfg.rollout, samples_per_prompt=cfg.filter.rollouts_per_round
            ),
        )
        self.backend_factory = backend_factory  # (model, tokenizer) -> backend; tests steer one
        self.engine: RolloutEngine | None = None

    def _build_engine(self) -> RolloutEngine:
        from recipe.policy import load_policy
        from recipe.retrieval.client import build_retriever
        from recipe.training.ranks import rank_device

        cfg = self.cfg
        model, tokenizer = load_policy(cfg.model)
        if cfg.rollout.backend == "hf":  # vLLM places its own engine on the rank's device
            model.to(rank_device())
        retriever = build_retriever(cfg.retriever)
        factory = self.backend_factory or (lambda m, t: build_backend(cfg, m, t))
        return build_rollout_engine(cfg, factory(model, tokenizer), retriever)

    def __call__(
        self, records: Sequence[QARecord], round_index: int, call_index: int
    ) -> list[list[SampleOutcome]]:
        if self.engine is None:
            self.engine = self._build_engine()
        self.engine.load_state_dict({"calls": round_index * ROUND_SEED_STRIDE + call_index})
        trajectories = self.engine.rollout(records)
        metric, threshold = self.cfg.filter.metric, self.cfg.filter.correct_at
        per_round = self.cfg.rollout.samples_per_prompt
        outcomes: list[list[SampleOutcome]] = [[] for _ in records]
        for i, trajectory in enumerate(trajectories):  # grouped by record, in record order
            score = score_trajectory(trajectory, self.cfg.tags, self.cfg.reward)
            outcomes[i // per_round].append(
                SampleOutcome(
                    score[metric] >= threshold, trajectory.n_searches > 0, score["prediction"]
                )
            )
        return outcomes

    def close(self) -> None:
        """Stop the engine's backend (a vLLM engine holds its device memory until then)."""
        if self.engine is not None:
            getattr(self.engine.backend, "close", lambda: None)()
            self.engine = None
