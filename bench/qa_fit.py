"""Fit the Q&A acceptance model: when is the best candidate the right entry?

    python bench/qa_fit.py            # fit on FIT_SETS; print the weights
    python bench/qa_fit.py --check    # also: cross-validated top-1 and declines per threshold
    python bench/qa_fit.py --scope    # first write content/scope.tsv from SCOPE_SETS (then refit and paste)

For every question the search ranks candidates as it does in production; the example is labelled 1 when
the best candidate is the expected entry and 0 otherwise (another entry, or a question out of scope). A
logistic regression over content.search.ACCEPT_FEATURES then estimates the chance that the best candidate
is right; the search answers at ANSWER_THRESHOLD. Paste the printed ACCEPT_WEIGHTS and ACCEPT_BIAS into
content/search.py (tests/content/test_search.py fails when more than 1 % of the decisions would differ).
fit_ood.tsv holds only out-of-scope questions (two thirds near the domain): without them the model saw too
few questions it should decline and answered near-domain ones too readily.

The scope classifier (content/classifier.py, ScopeClassifier) is trained at each index build on the entries'
phrasings and on content/scope.tsv, which --scope writes from SCOPE_SETS: the sets whose questions have been
read; the entry classifier (EntryClassifier) learns from the questions there labelled with an entry. The blind
sets (holdout3, holdout10, holdout11, holdout12, holdout15–17, holdout20, holdout22–26, holdout_dictated2,
holdout_dictated8, holdout_dictated13–18, holdout_dictated20, holdout_dictated21) are never in it, nor fitted on. holdout_dictated19
has been read (its wrong answers were fixed by cause) but is not in it either: as training data it cost the
never-read sets one right answer and two declines. The scope margin is no
feature of the acceptance model (content/search.py, SCOPE_DECLINE, says why).

Questions that are word for word an entry's text never reach the model (they get that entry) and are left out.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_predict  # noqa: E402
from qa_eval import DEV_DIR, OUT, read_dev  # noqa: E402

from content.loader import DEFAULT_ROOT, Content, load_valid_content, normalize_question  # noqa: E402
from content.search import ACCEPT_FEATURES, QaIndex  # noqa: E402

FIT_SETS = ("dev.tsv", "holdout.tsv", "holdout2.tsv", "holdout4.tsv", "fit_ood.tsv")
# Every set whose questions have been read (never a blind one): what content/scope.tsv is made of.
SCOPE_SETS = ("dev.tsv", "holdout.tsv", "holdout2.tsv", "holdout4.tsv", "holdout5.tsv", "holdout6.tsv",
              "holdout7.tsv", "holdout8.tsv", "holdout9.tsv", "holdout13.tsv", "holdout14.tsv", "holdout18.tsv",
              "holdout19.tsv", "holdout21.tsv",
              "holdout_dictated.tsv", "holdout_dictated3.tsv", "holdout_dictated4.tsv", "holdout_dictated5.tsv",
              "holdout_dictated6.tsv", "holdout_dictated7.tsv", "holdout_dictated9.tsv",
              "holdout_dictated10.tsv", "holdout_dictated11.tsv", "holdout_dictated12.tsv",
              "fit_ood.tsv", "fit_village.tsv", "fit_dictated.tsv", "fit_scope.tsv")


def write_scope(folder: Path = DEV_DIR, path: Path = DEFAULT_ROOT / "scope.tsv") -> int:
    """content/scope.tsv from SCOPE_SETS, each question once (its first label); the number of questions."""
    seen: set[str] = set()
    lines = ["# Members' questions for the scope classifier (content/classifier.py): written by bench/qa_fit.py --scope",
             f"# from tests/qa/{{{','.join(name.removesuffix('.tsv') for name in SCOPE_SETS)}}}.tsv; edit those, not this."]
    for question, expected, _ in read_dev([folder / name for name in SCOPE_SETS]):
        key = normalize_question(question)
        if key not in seen:
            seen.add(key)
            lines.append(f"{question}\t{expected}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(seen)


def examples(index: QaIndex, rows) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """(features, labels, in_domain) for each question the model decides."""
    features, labels, in_domain = [], [], []
    for question, expected, _ in rows:
        if normalize_question(index.analyzer.fold(question)) in index._verbatim:
            continue
        found = index.evidence(question)
        if not found.faq or (found.foreign and not found.ours):
            continue  # declined before the model is asked
        features.append(index.acceptance_features(found))
        labels.append(int(index._id(found.faq[0].key) == expected))
        in_domain.append(expected != OUT)
    return np.array(features), np.array(labels), in_domain


def held_out(content: Content, rows) -> QaIndex:
    """An index whose classifiers never saw these questions: content/scope.tsv without them."""
    asked = {normalize_question(question) for question, _, _ in rows}
    return QaIndex(replace(content, scope=[(question, label) for question, label in content.scope
                                           if normalize_question(question) not in asked]))


def fit(index: QaIndex, folder: Path = DEV_DIR) -> tuple[LogisticRegression, np.ndarray, np.ndarray, list[bool]]:
    """The model fitted on FIT_SETS, with its examples (tests/content/test_search.py checks the shipped
    weights against it). Each set's evidence comes from an index whose classifiers were trained without that
    set's questions (cross-fitting): the classifiers learn from scope.tsv, which holds these sets, and a model
    fitted on margins they reach for questions they learned would trust margins no new question reaches."""
    parts = [examples(held_out(index.content, rows), rows)
             for rows in (read_dev([folder / name]) for name in FIT_SETS)]
    x = np.concatenate([features for features, _, _ in parts])
    y = np.concatenate([labels for _, labels, _ in parts])
    in_domain = [flag for _, _, flags in parts for flag in flags]
    return LogisticRegression(C=1.0, max_iter=5000).fit(x, y), x, y, in_domain


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="print cross-validated rates per threshold")
    parser.add_argument("--scope", action="store_true", help="write content/scope.tsv from SCOPE_SETS first")
    args = parser.parse_args()

    if args.scope:
        print(f"content/scope.tsv: {write_scope()} questions")
    model, x, y, in_domain = fit(QaIndex(load_valid_content()))
    print(f"{len(y)} questions decided by the model ({sum(in_domain)} in domain), {int(y.sum())} with the right "
          f"entry first")
    print("ACCEPT_WEIGHTS = (" + ", ".join(f"{w:.2f}" for w in model.coef_[0]) + ")")
    print(f"ACCEPT_BIAS = {model.intercept_[0]:.2f}")
    for name, weight in zip(ACCEPT_FEATURES, model.coef_[0], strict=True):
        print(f"  {name:<12} {weight:+.2f}")
    if args.check:
        # Out-of-fold chances: what a threshold does on questions the model was not fitted on.
        strata = y + 2 * np.array(in_domain)
        folds = StratifiedKFold(5, shuffle=True, random_state=1)
        chance = cross_val_predict(LogisticRegression(C=1.0, max_iter=5000), x, y, cv=folds.split(x, strata),
                                   method="predict_proba")[:, 1]
        ids = np.array(in_domain)
        print("threshold  right answers (of the model's in-domain)  out-of-scope declined")
        for threshold in np.arange(0.3, 0.75, 0.05):
            answered = chance >= threshold
            print(f"  {threshold:.2f}     {np.mean(answered[ids] & (y[ids] == 1)):.3f}"
                  f"                                  {np.mean(~answered[~ids]):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
