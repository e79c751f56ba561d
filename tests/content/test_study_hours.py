"""Study hours still to do, worked out from the hours a member says they have (issue 17, item 3): the figure in
digits or Chinese numerals, the rule cited, a member past 32 told so; questions without their own hours go to the
search."""

from __future__ import annotations

import pytest

from content.computed import compute_answer
from content.study_hours import compute
from datetime import date


@pytest.mark.parametrize("question, states", [
    ("今年学了二十个学时 还差几个", ["不少于32个学时", "学了20个学时，还差12个", "第二十条"]),
    ("俺才记了18个学时 够不够", ["学了18个学时，还差14个"]),
    ("喂 那个我想问一哈 我今年学了三十五个学时 达标了没", ["学了35个学时，够了这个数"]),
])
def test_the_hours_left_are_worked_out(question, states):
    computed = compute(question)
    assert computed is not None and computed.entry_ids == ("study-hours-member",)
    for fact in states:
        assert fact in computed.text, (fact, computed.text)
    assert "班子成员要求更高" in computed.text and "不排名" in computed.text
    assert compute_answer(question, date(2026, 12, 7)) == computed


@pytest.mark.parametrize("question", ["学时没学够会怎么样", "党员每年要学多少学时", "今年学够32学时了吗", "学时怎么算",
                                      # The training before joining is join-training's, not a member's year.
                                      "我是发展对象 镇上培训我去了两天 才十六个学时 够不够",
                                      "入党培训记了二十个学时 还差几个"])
def test_without_the_members_own_hours_the_search_answers(question):
    assert compute(question) is None
