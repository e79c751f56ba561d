"""BM25 scores read from the matrix bm25s built (content/bm25.py) are bm25s's own."""

from __future__ import annotations

import random

import bm25s
import numpy as np

from content.bm25 import Bm25Scores


def test_the_scores_are_those_bm25s_gives():
    rng = random.Random(7)
    words = [f"w{number}" for number in range(300)]
    texts = [[rng.choice(words) for _ in range(rng.randint(0, 25))] for _ in range(400)]
    ours = Bm25Scores(texts)
    theirs = bm25s.BM25()
    theirs.index([tokens or [""] for tokens in texts], show_progress=False)
    for _ in range(300):
        # Repeated words, and words no text has, as in members' questions.
        query = [rng.choice(words + ["nowhere", "~党费"]) for _ in range(rng.randint(1, 12))]
        ids = ours.token_ids(query)
        assert ids == theirs.get_tokens_ids(query)
        if ids:
            np.testing.assert_array_equal(ours.scores(ids), theirs.get_scores_from_ids(ids))
