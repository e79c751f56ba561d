"""BM25 scores over a fixed set of texts: bm25s builds the score matrix, this module reads it.

bm25s computes every (token, text) score when it indexes, as a sparse matrix; scoring a query then only adds
up the columns of its tokens. That part is done here with the same numpy operations in the same order
(bm25s.BM25.get_scores_from_ids with the lucene method and the numpy backend: a test compares the
results), so that the serving process, which reads a built index from the cache (content/index_cache.py),
never imports bm25s and, through it, SciPy: some 20 MB and a tenth of a second per process.
"""

from __future__ import annotations

import logging

import numpy as np


class Bm25Scores:
    """The BM25 score of every text for a query's tokens."""

    def __init__(self, texts: list[list[str]]) -> None:
        """texts: each text's tokens (an empty text is indexed as one empty token, as bm25s needs)."""
        import bm25s

        # bm25s sets its own logger to DEBUG when imported; its progress lines are noise in our logs.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        retriever = bm25s.BM25()
        retriever.index([tokens or [""] for tokens in texts], show_progress=False)
        if retriever.nonoccurrence_array is not None:  # only for BM25 variants we do not use
            raise ValueError(f"bm25s method {retriever.method!r} is not supported")
        self.vocabulary: dict[str, int] = dict(retriever.vocab_dict)
        self._data = retriever.scores["data"]
        self._indices = retriever.scores["indices"]
        self._indptr = retriever.scores["indptr"]
        self._texts = int(retriever.scores["num_docs"])
        self._dtype = np.dtype(retriever.dtype)
        self._int_dtype = np.dtype(retriever.int_dtype)

    def token_ids(self, query: list[str]) -> list[int]:
        """The ids of the query's tokens that some text has, in the query's order (repeats kept)."""
        return [self.vocabulary[token] for token in query if token in self.vocabulary]

    def texts_with(self, token_id: int) -> np.ndarray:
        """The texts that have the token (each once)."""
        return self._indices[self._indptr[token_id]:self._indptr[token_id + 1]]

    def scores(self, token_ids: list[int]) -> np.ndarray:
        """Each text's score: the sum of its scores for the tokens, added token by token."""
        ids = np.asarray(token_ids, dtype=self._int_dtype)
        starts, ends = self._indptr[ids], self._indptr[ids + 1]
        scores = np.zeros(self._texts, dtype=self._dtype)
        for start, end in zip(starts, ends):
            np.add.at(scores, self._indices[start:end], self._data[start:end])
        return scores
