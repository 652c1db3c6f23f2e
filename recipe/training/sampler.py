"""The order in which training questions are drawn: a seeded shuffle per epoch.

Its whole state is (epoch, position), saved in every checkpoint with the question count, so a
resumed run draws exactly the questions the uninterrupted run would have drawn. A resume over
another number of questions (allowed by `trainer.resume_allow_changes`) starts the next epoch:
the saved position means nothing in another permutation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class QuestionSampler:
    def __init__(self, records: Sequence, seed: int):
        if not records:
            raise ValueError("no training questions")
        self.records = list(records)
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.records))

    def next_batch(self, n: int) -> list:
        """`n` records; an epoch boundary inside the batch continues with the next shuffle."""
        out = []
        while len(out) < n:
            if self.position == len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._permutation(self.epoch)
            out.append(self.records[self._order[self.position]])
            self.position += 1
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "size": len(self.records)}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        size = state.get("size", len(self.records) if self.position <= len(self.records) else -1)
        if size != len(self.records):
            self.epoch, self.position = self.epoch + 1, 0
        self._order = self._permutation(self.epoch)
