"""The entry classifier tells siblings apart by the characters their phrasings use."""

from __future__ import annotations

import numpy as np
import pytest

from content.classifier import EntryClassifier, ScopeClassifier, scope_grams
from content.loader import load_valid_content
from content.search import ANSWERED, QaIndex


def test_it_scores_the_entry_whose_phrasings_share_the_telling_characters():
    texts = ["退休金党费交多少", "领养老金的党员党费", "种地的党员党费交多少", "务农没有工资党费", "党费交给谁", "在哪交党费"]
    classifier = EntryClassifier(texts, [0, 0, 1, 1, 2, 2], entries=3)
    assert int(np.argmax(classifier.scores("俺种了一辈子地 党费咋算"))) == 1
    assert int(np.argmax(classifier.scores("拿退休金的交多少"))) == 0


def test_two_entries_get_opposite_margins_and_one_entry_gets_none():
    two = EntryClassifier(["党费交多少", "党费标准", "入党申请书", "入党怎么申请"], [0, 0, 1, 1], entries=2)
    scores = two.scores("写入党申请")
    assert scores[1] > 0 > scores[0] and scores[0] == pytest.approx(-scores[1])
    one = EntryClassifier(["党费交多少", "党费标准"], [0, 0], entries=1)
    assert one.scores("党费").tolist() == [0.0]


@pytest.fixture(scope="module")
def shipped(shipped_index) -> QaIndex:
    return shipped_index


@pytest.mark.parametrize(("question", "entry"), [
    ("退休了党费还交吗按啥算", "dues-retiree"),  # dues-low-income shares most of its words
    ("外出务工党员怎么过组织生活", "member-floating-life"),  # study-away does too
    # Both answers state the year; dev, holdout and holdout2 label it the 发展对象 entry (its minimum, not the
    # activist's training), and members' labelled questions teach the classifier that since round ten.
    ("积极分子要考察多长时间", "join-development-object"),
    ("预备党员怎样才能转成正式党员", "join-conversion"),  # not the whole path from application (join-total-time)
])
def test_siblings_that_share_most_words_are_told_apart(shipped, question, entry):
    result = shipped.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, entry)


def test_its_margins_are_scikit_learns_without_importing_it_to_score():
    """Scoring is done here with the fitted weights (so the server never imports scikit-learn): the margins
    must be the ones scikit-learn's own pipeline gives, for the entries' texts and for members' questions."""
    from pathlib import Path

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    content = load_valid_content()
    texts, labels = [], []
    for number, entry in enumerate(content.faq):
        for text in dict.fromkeys((entry.question, *entry.phrasings)):
            texts.append(text)
            labels.append(number)
    ours = EntryClassifier(texts, labels, entries=len(content.faq))
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 2), sublinear_tf=True)
    model = LinearSVC(C=1.0, random_state=0).fit(vectorizer.fit_transform(texts), labels)
    questions = [line.split("\t")[0] for line in
                 (Path(__file__).parents[1] / "qa" / "dev.tsv").read_text(encoding="utf-8").splitlines()
                 if line and not line.startswith("#")]
    samples = [*texts[::7], *questions, "", "  ", "ABC Def 党费 2024", "👍👍", "党"]
    expected = model.decision_function(vectorizer.transform(samples))
    for sample, margins in zip(samples, expected):
        # The same operations in the same order, over weights kept in single precision (content/classifier.py):
        # equal within what rounding the weights to float32 moves (margins are of order 1).
        np.testing.assert_allclose(ours.scores(sample), margins, rtol=0, atol=1e-5, err_msg=sample)


def test_the_scope_margins_are_scikit_learns_too(shipped):
    """The scope classifier is scored the same way: its margins are those of scikit-learn's pipeline over the
    same token lists, for entries' texts, labelled questions and odd input."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    content = shipped.content
    texts = [shipped.analyzer.tokens(text) for entry in content.faq[:60] for text in (entry.question, *entry.phrasings)]
    labelled = content.scope[::3]
    texts += [shipped.scope_tokens(question) for question, _ in labelled]
    labels = [True] * (len(texts) - len(labelled)) + [label != "out_of_scope" for _, label in labelled]
    ours = ScopeClassifier(texts, labels)
    vectorizer = TfidfVectorizer(analyzer=scope_grams, sublinear_tf=True, min_df=ScopeClassifier.MIN_TEXTS)
    model = LinearSVC(C=ScopeClassifier.C, class_weight={0: ScopeClassifier.OUT_WEIGHT, 1: 1.0}, random_state=0)
    model.fit(vectorizer.fit_transform(texts), [int(label) for label in labels])
    samples = [*texts[::11], [], shipped.analyzer.tokens("ABC Def 党费 2024 👍"),
               shipped.analyzer.tokens("喂 那个我想问一下 村干部一个月工资多少 党小组长怎么产生 " * 5)]
    expected = model.decision_function(vectorizer.transform(samples))
    for sample, margin in zip(samples, expected):
        assert ours.margin(sample) == pytest.approx(float(margin), abs=1e-12), sample


def test_without_out_of_scope_examples_there_is_no_scope_signal():
    # A deployment's own content without scope.tsv: every question is neither side, and nothing is declined by it.
    classifier = ScopeClassifier([["党费"], ["入党"]], [True, True])
    assert classifier.margin(["村干部", "工资"]) == 0.0
