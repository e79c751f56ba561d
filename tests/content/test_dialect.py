"""Dialect function words become Mandarin before the search reads a question."""

from __future__ import annotations

import pytest

from content.dialect import to_mandarin
from content.search import ANSWERED, QaIndex


def test_cantonese_and_southwestern_small_words_become_mandarin():
    assert to_mandarin("党费系唔系每个月都要交㗎") == "党费是不是每个月都要交"
    assert to_mandarin("开会嚟唔到点样请假") == "开会来不到怎么样请假"
    assert to_mandarin("入党要啷个写申请 莫得人教") == "入党要怎么写申请 没有人教"


def test_mandarin_words_that_share_characters_are_left_alone():
    for text in ("要得到上级批准", "党员和群众的关系", "支部联系群众", "好多党员"):
        assert to_mandarin(text) == text


@pytest.fixture(scope="module")
def shipped(shipped_index) -> QaIndex:
    return shipped_index


@pytest.mark.parametrize(("question", "entry"), [
    ("党费系唔系每个月都要交㗎", "dues-monthly"),
    ("开会嚟唔到点样请假", "meeting-qingjia"),
])
def test_a_question_in_dialect_is_answered(shipped, question, entry):
    result = shipped.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, entry)
