"""Which entry does a question belong to? A linear classifier trained on the entries' own texts.

Every entry has a standard question and some thirty phrasings: labelled examples of the ways members ask
it. A linear support vector machine over character unigrams and bigrams (TF-IDF) learns from them which
characters tell an entry from its siblings (退休金 for the retirees' dues, 没有工资 for the farmers'), which
the word-overlap evidence in content/search.py cannot: there every shared word counts for every entry that
has it. On the evaluation sets the classifier ranks the right entry first more often than the overlap
evidence does, and the two together better than either (bench/qa_eval.py; docs/architecture.md).

Training takes about a second for 160 entries and happens whenever the index is built (content/index_build.py).
scikit-learn fits; scoring a question is done here, with the fitted vocabulary, weights and intercepts, in the
order of operations scikit-learn uses (so the margins are the same numbers: a test compares them). The
serving process then never imports scikit-learn and SciPy, which cost half a second and some 80 MB in each
process for what is, per question, a few dozen additions of weight rows.

ScopeClassifier asks the question before that one: is this about anything the entries cover at all? Near
misses sound like party or village business (村干部工资, 党员能优先评低保不, 帮我写个请假条) and share most words
with some entry, so the overlap evidence finds a candidate for them; a linear model trained on the entries'
phrasings (in scope) and on labelled member questions (content/scope.tsv) learns which words and which
pairs of words mark one or the other. It is scored the same way, in plain numpy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from content.tokenizer import WordTable

# scikit-learn's whitespace normalization before cutting n-grams (CountVectorizer._white_spaces).
_WHITE_SPACES = re.compile(r"\s\s+")
NGRAMS = (1, 2)


def char_wb_ngrams(text: str) -> list[str]:
    """The character n-grams of text inside its words, each word padded with a space: scikit-learn's
    `analyzer="char_wb"` (lower-cased, as its default preprocessor does)."""
    low, high = NGRAMS
    grams: list[str] = []
    for word in _WHITE_SPACES.sub(" ", text.lower()).split():
        word = f" {word} "
        for size in range(low, high + 1):
            offset = 0
            grams.append(word[offset:offset + size])
            while offset + size < len(word):
                offset += 1
                grams.append(word[offset:offset + size])
            if offset == 0:  # a word shorter than size counts once
                break
    return grams


def _tfidf(grams: list[str], vocabulary: Mapping[str, int], idf: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The TF-IDF vector of a text's grams (sublinear counts, times idf, l2-normalized) as sorted indices and
    values: what TfidfVectorizer.transform gives, computed in its order."""
    counts: dict[int, int] = {}
    for gram in grams:
        column = vocabulary.get(gram)
        if column is not None:
            counts[column] = counts.get(column, 0) + 1
    columns = sorted(counts)
    values = np.log(np.array([counts[column] for column in columns], dtype=np.float64)) + 1.0
    values *= idf[columns]
    # Summed one by one, as scikit-learn's row normalization does (numpy's sum would pair them up).
    total = 0.0
    for value in values.tolist():
        total += value * value
    if total != 0.0:
        values /= math.sqrt(total)
    return columns, values


class EntryClassifier:
    """Scores every entry for a question; higher is likelier. Texts must already be canonical (synonyms,
    slips) so that the classifier sees what the rest of the search sees."""

    def __init__(self, texts: list[str], labels: list[int], entries: int) -> None:
        self.entries = entries
        self._vocabulary: dict[str, int] = {}
        self._weights: np.ndarray | None = None  # one row per n-gram: its weight for each class
        if len(set(labels)) < 2:
            return  # one entry (or none): nothing to tell apart
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.svm import LinearSVC

        # char_wb keeps n-grams inside a run of text; Chinese has no spaces, so that is the whole clause.
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=NGRAMS, sublinear_tf=True)
        model = LinearSVC(C=1.0, random_state=0).fit(vectorizer.fit_transform(texts), labels)
        self._vocabulary = dict(vectorizer.vocabulary_)
        self._idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        # Kept in single precision: one row per n-gram for every entry is the index's largest array (18 MB
        # rather than 36 since members' questions joined the training), and the margins move by about 1e-7.
        self._weights = np.ascontiguousarray(model.coef_.T, dtype=np.float32)
        self._intercept = np.asarray(model.intercept_, dtype=np.float64)
        self._classes = np.asarray(model.classes_, dtype=np.int64)

    def _features(self, text: str) -> tuple[list[int], np.ndarray]:
        return _tfidf(char_wb_ngrams(text), self._vocabulary, self._idf)

    def scores(self, canonical_question: str) -> np.ndarray:
        """The classifier's margin for each entry (0 for all when there is nothing to tell apart)."""
        full = np.zeros(self.entries)
        if self._weights is None:
            return full
        columns, values = self._features(canonical_question)
        # The sparse-times-dense product as SciPy computes it: each feature's weight row added in turn.
        margins = np.zeros(self._weights.shape[1])
        for column, value in zip(columns, values):
            margins += value * self._weights[column]
        margins = margins + self._intercept
        if len(self._classes) == 2:
            # Two classes: one margin, positive for the second class.
            full[self._classes[1]], full[self._classes[0]] = float(margins[0]), -float(margins[0])
            return full
        full[self._classes] = margins
        return full


# A question's words are paired up to this many (the first ones): a dictated message of 300 characters would
# otherwise have thousands of pairs, and the few first words say what it is about.
SCOPE_PAIRED_WORDS = 24


def scope_grams(tokens: list[str]) -> list[str]:
    """What the scope classifier reads of a question: the search's tokens (words and character pairs,
    content/search.py) and every pair of its words, unordered ("小组长+补贴", "党小组长+产生"). A pair tells what
    a word is said about: 组长 with 选 or 补贴 is a village group's or a cadre's, with 党小组 it is ours."""
    words = list(dict.fromkeys(token for token in tokens if not token.startswith("~")))[:SCOPE_PAIRED_WORDS]
    pairs = [f"{a}+{b}" if a < b else f"{b}+{a}" for i, a in enumerate(words) for b in words[i + 1:]]
    return [*tokens, *pairs]


class ScopeClassifier:
    """The margin of a question for "in scope": positive when it is about what the entries cover, negative
    for a near miss. Trained on token lists (Analyzer.tokens), labels True for in scope."""

    # Out-of-scope examples are few beside the entries' thousands of phrasings: each counts this many times.
    OUT_WEIGHT = 3.0
    C = 1.0
    # A gram seen in one training text only is mostly a slip or a name: left out, which keeps the
    # vocabulary (and the index) small.
    MIN_TEXTS = 2

    def __init__(self, texts: list[list[str]], labels: list[bool]) -> None:
        self._vocabulary: Mapping[str, int] = {}
        self._weights: np.ndarray | None = None
        self._intercept = 0.0
        if len(set(labels)) < 2:
            return  # no out-of-scope examples (a deployment's own content without scope.tsv): no signal
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.svm import LinearSVC

        vectorizer = TfidfVectorizer(analyzer=scope_grams, sublinear_tf=True, min_df=self.MIN_TEXTS)
        model = LinearSVC(C=self.C, class_weight={0: self.OUT_WEIGHT, 1: 1.0}, random_state=0)
        model.fit(vectorizer.fit_transform(texts), [int(label) for label in labels])
        # Some 56,000 words and word pairs: as a dict, 9 MB in every serving process (the idle goal is 200 MB);
        # in a WordTable's flat arrays, about one.
        self._vocabulary = WordTable(dict(vectorizer.vocabulary_))
        self._idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        self._weights = np.asarray(model.coef_[0], dtype=np.float64)
        self._intercept = float(model.intercept_[0])

    def margin(self, tokens: list[str]) -> float:
        """The question's margin (0.0, neither side, when there is no model)."""
        if self._weights is None:
            return 0.0
        columns, values = _tfidf(scope_grams(tokens), self._vocabulary, self._idf)
        total = 0.0
        for column, value in zip(columns, values.tolist()):
            total += value * self._weights[column]
        return total + self._intercept
