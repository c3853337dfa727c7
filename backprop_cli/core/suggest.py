"""The known word closest to a mistyped one, for the "did you mean …?" of an error.

One rule for every place a name can be mistyped (a function, a model, a command-line
option): a word is a slip of a known one when it is within a small edit distance of it,
counting a swap of two neighbouring letters as one edit (`sni` for `sin`) and ignoring case
(`Relu` for `relu`). Short words allow fewer edits, so that a one-letter variable is never
"corrected" into a function.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def allowed_edits(word: str) -> int:
    """How many edits a slip of `word` may hold: none for one or two letters (only the
    case may differ), one up to five letters, two beyond."""
    if len(word) <= 2:
        return 0
    return 1 if len(word) <= 5 else 2


def distance(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap two neighbours) that turn `a` into `b`: the
    optimal string alignment distance, case ignored."""
    a, b = a.lower(), b.lower()
    if a == b:
        return 0
    before: list[int] = []  # the row two steps back, for swaps
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (ca != cb),
            )
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], before[j - 2] + 1)
        before, previous = previous, current
    return previous[-1]


def closest(word: str, known: Iterable[str]) -> str | None:
    """The known word `word` is most likely a slip of, or None when none is close enough
    (see allowed_edits). Ties go to the more similar spelling (difflib's ratio), then to
    the first in `known`."""
    limit = allowed_edits(word)
    best: tuple[int, float] | None = None
    choice = None
    for candidate in known:
        if candidate == word:
            continue
        edits = distance(word, candidate)
        if edits > limit:
            continue
        score = (edits, -difflib.SequenceMatcher(None, word, candidate).ratio())
        if best is None or score < best:
            best, choice = score, candidate
    return choice
