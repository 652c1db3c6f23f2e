"""Answer metrics: exact match, cover exact match and token F1 under a named normalisation.

Two profiles pin the two normalisations the literature uses:

- ``squad``: the official SQuAD v1.1 evaluation script (Rajpurkar et al. 2016,
  ``evaluate-v1.1.py``) as reused by the HotpotQA evaluation (Yang et al. 2018,
  ``hotpot_evaluate_v1.py``): lower-case, delete ASCII punctuation, drop the articles
  a/an/the, collapse whitespace. HotpotQA adds the yes/no/noanswer rule to F1.
- ``r1searcher``: the R1-Searcher release (RUCAIBox/R1-Searcher, arXiv:2503.05592; its reward
  server and evaluation scripts): underscores become spaces, punctuation and the quote marks
  ‘ ’ ´ ` become spaces instead of being deleted (so "U.S." is "u s", not "us"), and the exact
  strings "True" / "False" are read as "yes" / "no" before normalising. Its F1 keeps the
  HotpotQA yes/no/noanswer rule.

Every metric takes one gold string or a list of them and returns the best score over the golds,
as a float in [0, 1]; an empty gold list scores 0.

Odd inputs, decided here once: a prediction of `None` means "no answer" and scores 0 on every
metric (even against an empty gold); a number (an `int` or `float` read from JSON, a year say)
is compared as `str(value)`; a `None` gold is skipped; a list, dict or other object where one
string is expected raises `TypeError` naming it (score each candidate separately). Text is not
Unicode-folded: the official scripts apply no NFKC, so "ﬁ" and "fi" or full-width and ASCII
digits differ here too; fold both sides before calling for that behaviour.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

# SQuAD v1.1 / HotpotQA: articles are dropped as whole words after punctuation handling.
ARTICLES = re.compile(r"\b(a|an|the)\b")


@dataclass(frozen=True)
class NormalizationProfile:
    """How answer strings are normalised before they are compared."""

    name: str
    punctuation: frozenset[str]
    punctuation_to_space: bool  # False: delete the character (SQuAD); True: a space (R1-Searcher)
    underscore_to_space: bool
    exact_string_map: dict[str, str] = field(default_factory=dict)  # applied to the raw string
    # F1 is 0 when either side normalises to one of these and the sides differ (HotpotQA).
    exclusive_answers: frozenset[str] = frozenset({"yes", "no", "noanswer"})


PROFILES: dict[str, NormalizationProfile] = {}


def register_profile(profile: NormalizationProfile) -> NormalizationProfile:
    PROFILES[profile.name] = profile
    return profile


register_profile(
    NormalizationProfile(
        name="squad",
        punctuation=frozenset(string.punctuation),
        punctuation_to_space=False,
        underscore_to_space=False,
    )
)
register_profile(
    NormalizationProfile(
        name="r1searcher",
        punctuation=frozenset(string.punctuation) | frozenset("‘’´`"),
        punctuation_to_space=True,
        underscore_to_space=True,
        exact_string_map={"True": "yes", "False": "no"},
    )
)


def get_profile(profile: str | NormalizationProfile) -> NormalizationProfile:
    if isinstance(profile, NormalizationProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(
            f"unknown metric profile {profile!r}; known: {', '.join(sorted(PROFILES))}"
        ) from None


def normalize_answer(text: str, profile: str | NormalizationProfile = "squad") -> str:
    """The profile's normalised form of `text` (tokens joined by single spaces)."""
    spec = get_profile(profile)
    text = _as_text(text, "the text to normalise")
    text = spec.exact_string_map.get(text, text)
    if spec.underscore_to_space:
        text = text.replace("_", " ")
    text = text.lower()
    replacement = " " if spec.punctuation_to_space else ""
    text = "".join(replacement if ch in spec.punctuation else ch for ch in text)
    text = ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _as_text(value: object, role: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise TypeError(
        f"{role} must be a string, got {type(value).__name__} {value!r:.80}; "
        "score each candidate separately"
    )


def _as_list(golds: object) -> list[str]:
    if golds is None or isinstance(golds, str | int | float):
        golds = [golds]
    if not isinstance(golds, Sequence):
        raise TypeError(f"golds must be a string or a list of strings, got {type(golds).__name__}")
    return [_as_text(gold, "a gold answer") for gold in golds if gold is not None]


def _best(pred: str | None, golds: str | Sequence[str], score, profile) -> float:
    spec = get_profile(profile)
    gold_texts = _as_list(golds)
    if pred is None:
        return 0.0
    norm_pred = normalize_answer(_as_text(pred, "the prediction"), spec)
    scores = [score(norm_pred, normalize_answer(gold, spec), spec) for gold in gold_texts]
    return max(scores, default=0.0)


def _exact(norm_pred: str, norm_gold: str, spec: NormalizationProfile) -> float:
    return float(norm_pred == norm_gold)


def _cover(norm_pred: str, norm_gold: str, spec: NormalizationProfile) -> float:
    # R1-Searcher's ACC_R (cover_exact_match_score_1): every gold token occurs among the
    # prediction's tokens, regardless of order and adjacency. Their `split(" ")` turns an empty
    # gold into [""], which only an empty prediction covers; the second branch keeps that.
    gold_tokens = norm_gold.split()
    if not gold_tokens:
        return float(norm_pred == "")
    pred_tokens = set(norm_pred.split())
    return float(all(token in pred_tokens for token in gold_tokens))


def _f1(norm_pred: str, norm_gold: str, spec: NormalizationProfile) -> float:
    # hotpot_evaluate_v1.f1_score: yes/no/noanswer must match exactly, else F1 is 0.
    exclusive = spec.exclusive_answers
    if (norm_pred in exclusive or norm_gold in exclusive) and norm_pred != norm_gold:
        return 0.0
    pred_tokens = norm_pred.split()
    gold_tokens = norm_gold.split()
    n_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if n_same == 0:
        return 0.0
    precision = n_same / len(pred_tokens)
    recall = n_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(
    pred: str | None, golds: str | Sequence[str], profile: str | NormalizationProfile = "squad"
) -> float:
    """1.0 when the normalised prediction equals some normalised gold."""
    return _best(pred, golds, _exact, profile)


def cover_exact_match(
    pred: str | None, golds: str | Sequence[str], profile: str | NormalizationProfile = "squad"
) -> float:
    """1.0 when every token of some normalised gold occurs in the normalised prediction."""
    return _best(pred, golds, _cover, profile)


def f1_score(
    pred: str | None, golds: str | Sequence[str], profile: str | NormalizationProfile = "squad"
) -> float:
    """Token-level F1 (bag of normalised tokens), best over the golds."""
    return _best(pred, golds, _f1, profile)
