"""Which entry does a question belong to? A linear classifier trained on the entries' own texts.

Every entry has a standard question and some thirty phrasings: labelled examples of the ways members ask
it. A linear support vector machine over character unigrams and bigrams (TF-IDF) learns from them which
characters tell an entry from its siblings (退休金 for the retirees' dues, 没有工资 for the farmers'), which
the word-overlap evidence in content/search.py cannot: there every shared word counts for every entry that
has it. On the evaluation sets the classifier ranks the right entry first more often than the overlap
evidence does, and the two together better than either (bench/qa_eval.py; docs/architecture.md).

Training takes about a second for 160 entries and happens whenever the index is built (start-up, reload).
"""

from __future__ import annotations

import numpy as np


class EntryClassifier:
    """Scores every entry for a question; higher is likelier. Texts must already be canonical (synonyms,
    slips) so that the classifier sees what the rest of the search sees."""

    def __init__(self, texts: list[str], labels: list[int], entries: int) -> None:
        self.entries = entries
        self._vectorizer = None
        self._model = None
        if len(set(labels)) < 2:
            return  # one entry (or none): nothing to tell apart
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.svm import LinearSVC

        # char_wb keeps n-grams inside a run of text; Chinese has no spaces, so that is the whole clause.
        self._vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 2), sublinear_tf=True)
        self._model = LinearSVC(C=1.0, random_state=0).fit(self._vectorizer.fit_transform(texts), labels)
        self._classes = np.asarray(self._model.classes_, dtype=np.int64)

    def scores(self, canonical_question: str) -> np.ndarray:
        """The classifier's margin for each entry (0 for all when there is nothing to tell apart)."""
        full = np.zeros(self.entries)
        if self._model is None:
            return full
        margins = self._model.decision_function(self._vectorizer.transform([canonical_question]))[0]
        if len(self._classes) == 2:
            # Two classes: one margin, positive for the second class.
            full[self._classes[1]], full[self._classes[0]] = float(margins), -float(margins)
            return full
        full[self._classes] = margins
        return full
