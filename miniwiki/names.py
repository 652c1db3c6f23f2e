"""Invented names from syllables, unique within a world and excluded across worlds.

Every invented word a world uses passes through one `NameForge`, which remembers it; a second
world built with `excluded=first.words` can never reuse one, so the two worlds share no entity
name (and not even a part of one). The syllable inventory leans on unusual clusters so that the
words read as names but rarely as English or as real places.
"""

from __future__ import annotations

import random

ONSETS = (
    "b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "r", "s",
    "sk", "st", "t", "th", "tr", "v", "z", "j", "qu",
)  # fmt: skip
NUCLEI = ("a", "e", "i", "o", "u", "ae", "ou", "y")
CODAS = ("", "", "n", "r", "l", "s", "th", "m", "rk", "nd", "sh", "v", "z", "x")

# Endings by kind give each type a recognisable look (people vs places vs things).
SUFFIXES = {
    "given_male": ("o", "en", "ric", "as", "ian", "or", "el", "im"),
    "given_female": ("a", "ette", "ine", "is", "ara", "elle", "ys", "wyn"),
    "family": ("son", "ov", "ardi", "ell", "ski", "ane", "ley", "wick", "quist", "mont"),
    "city": ("ford", "holm", "ara", "ene", "wick", "on", "mar", "grad", "vale", "port"),
    "country": ("ia", "ar", "esh", "mark", "ania", "eth", "ora", "istan"),
    "thing": ("", "a", "is", "or", "ex", "iu", "an"),
}
MIN_WORD_LETTERS = 5
MAX_WORD_LETTERS = 10
MAX_TRIES = 10_000


class NameExhausted(RuntimeError):
    """No fresh word could be drawn: the world asks for more names than the inventory holds."""


class NameForge:
    """Draws fresh invented words; a word is never handed out twice nor taken from `excluded`."""

    def __init__(self, rng: random.Random, excluded: frozenset[str] = frozenset()):
        self.rng = rng
        self.excluded = frozenset(w.lower() for w in excluded)
        self._used: set[str] = set()
        self._ordered: list[str] = []

    @property
    def words(self) -> frozenset[str]:
        return frozenset(self._ordered)

    def _syllable(self) -> str:
        return self.rng.choice(ONSETS) + self.rng.choice(NUCLEI) + self.rng.choice(CODAS)

    def _candidate(self, kind: str, syllables: int) -> str:
        stem = "".join(self._syllable() for _ in range(syllables))
        return (stem + self.rng.choice(SUFFIXES[kind])).capitalize()

    def word(self, kind: str, syllables: tuple[int, int] = (1, 2)) -> str:
        for _ in range(MAX_TRIES):
            w = self._candidate(kind, self.rng.randint(*syllables))
            key = w.lower()
            if not MIN_WORD_LETTERS <= len(w) <= MAX_WORD_LETTERS:
                continue
            if key in self._used or key in self.excluded:
                continue
            self._used.add(key)
            self._ordered.append(w)
            return w
        raise NameExhausted(f"no fresh {kind} word after {MAX_TRIES} tries")


def demonym(country: str) -> str:
    """Adjective of nationality: Velmoria -> Velmorian, Drastar -> Drastari, Kesh -> Keshese."""
    if country.endswith("a"):
        return country + "n"
    if country.endswith(("ar", "eth", "mark")):
        return country + "i"
    if country.endswith("esh"):
        return country + "ese"
    if country.endswith("istan"):
        return country + "i"
    return country + "ian"
