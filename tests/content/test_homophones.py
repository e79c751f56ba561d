"""Sound-alike slips from pinyin keyboards and voice input are read as the domain term; real words are not."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from content.homophones import readings
from content.search import ANSWERED, QaIndex


@pytest.fixture(scope="module")
def index(shipped_index) -> QaIndex:
    return shipped_index


@pytest.mark.parametrize(("typed", "meant"), [
    ("在公众号上情假发啥字", "在公众号上请假发啥字"),  # 情|假发 (a wig) as jieba cuts it
    ("三会一颗是啥", "三会一课是啥"),
    ("党远大会都讲些啥", "党员大会都讲些啥"),
    ("五必防具体指什么", "五必访具体指什么"),
    ("预备其多长", "预备期多长"),
    ("只委会多久开一次", "支委会多久开一次"),
])
def test_a_slip_in_a_domain_term_is_put_right(index, typed, meant):
    assert index.analyzer.homophones.fix(typed) == meant


@pytest.mark.parametrize("text", [
    "不交党费会被开除吗",  # 不 → 补 would turn the question around
    "我想当飞行员",  # 当飞 sounds like 党费 but cuts through 飞行员
    "回忆过去的事",  # 回忆 is a word, not a slip for 会议
    "你知不知道",  # two characters away from 支部
    "我舅舅年轻时候犯过事",  # 过世 reads only a little better than 过事
    "请家人告诉支部书记",  # 请假人 is not likely enough
])
def test_words_meant_as_written_are_left_alone(index, text):
    assert index.analyzer.homophones.fix(text) == text


@pytest.mark.parametrize(("question", "entry"), [
    ("在公众号上情假发啥字", "meeting-qingjia"),
    ("三会一颗是啥", "meeting-sanhui-yike-what"),
    ("五必防具体指什么", "care-wubifang-what"),
])
def test_a_question_with_a_slip_gets_the_right_answer(index, question, entry):
    result = index.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, entry)


def test_readings_ignore_tones_and_common_accent_mergers():
    assert readings("请") & readings("情")  # qǐng / qíng
    assert readings("四") & readings("是")  # sì / shì: sh and s merge
    assert readings("林") & readings("拧")  # lín / nǐng: l and n, -in and -ing merge
    assert not readings("党") & readings("单")  # dǎng / dān: -ang and -an stay apart


def test_the_look_up_cache_stays_bounded(index, monkeypatch):
    import content.homophones as homophones

    monkeypatch.setattr(homophones, "FOUND_MAX", 50)
    fixer = index.analyzer.homophones
    for number in range(40):
        fixer.fix(f"第{number}个问题情假怎么写党非交多少三会一颗")
    assert len(fixer._found) <= 50
    assert fixer.fix("在公众号上情假发啥字") == "在公众号上请假发啥字"  # still right after emptying


class _Everything:
    def __contains__(self, item) -> bool:
        return True


def test_turning_windows_away_by_their_first_character_changes_no_fix(index):
    # _fix_run looks a window up only if it starts with a term's first character or ends with a term's rest;
    # with that check made to let everything through, every dictated evaluation question (voice input: the most
    # slips) and every FAQ text reads the same.
    fixer = index.analyzer.homophones
    unchecked = copy.copy(fixer)
    unchecked._heads, unchecked._found = _Everything(), {}
    qa = Path(__file__).resolve().parents[1] / "qa"
    texts = [index.analyzer.fold(line.split("\t")[0]) for path in sorted(qa.glob("*dictated*.tsv"))
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
    texts += [index.analyzer.fold(text) for entry in index.faq for text in (entry.question, *entry.phrasings)]
    fixed = [fixer.fix(text) for text in texts]
    assert fixed == [unchecked.fix(text) for text in texts]
    assert sum(after != before for after, before in zip(fixed, texts)) >= 100  # real slips were fixed
