"""jieba's tokenizer as an index keeps it (content/tokenizer.py): a compact word table, picklable."""

from __future__ import annotations

import pickle
from pathlib import Path

import jieba
import pytest

from content.loader import load_valid_content
from content.tokenizer import Tokenizer, WordTable, with_main_dictionary


@pytest.fixture(scope="module")
def words() -> dict[str, int]:
    tokenizer = with_main_dictionary()
    tokenizer.add_word("三会一课", 100, "n")
    return dict(tokenizer.FREQ)


def test_the_word_table_holds_every_word_and_frequency_and_nothing_else(words):
    table = WordTable(words)
    assert len(table) == len(words)
    assert all(table.get(word) == frequency for word, frequency in words.items())
    assert list(table) == list(words)
    # Pieces of members' questions: words, prefixes (frequency 0) and strings jieba has never seen.
    content = load_valid_content()
    text = "".join(entry.answer for entry in content.faq) + "😀a\ud800b，"
    pieces = {text[start:start + size] for start in range(len(text)) for size in range(1, 6)}
    assert sum(piece not in words for piece in pieces) > 1000
    for piece in pieces:
        assert table.get(piece) == words.get(piece), piece
        assert (piece in table) == (piece in words), piece
    with pytest.raises(KeyError):
        table["没有这个词的词"]


def test_the_words_looked_up_last_answer_as_the_table_does_and_are_never_pickled(words, monkeypatch):
    monkeypatch.setattr(WordTable, "RECENT", 50)
    table = WordTable(words)
    pieces = ["三会一课", "三会", "党", "没有这个词的词", "支部"] * 3 + [f"词{n}" for n in range(120)]
    for piece in pieces:  # twice: the second time from the recent answers
        assert table.get(piece) == words.get(piece), piece
        assert table.get(piece, -1) == words.get(piece, -1), piece
        assert (piece in table) == (piece in words), piece
    assert 0 < len(table._recent) <= 50  # emptied whenever it is full
    copy = pickle.loads(pickle.dumps(table))
    assert copy._recent == {}
    assert all(copy.get(piece) == words.get(piece) for piece in pieces)


def _questions() -> list[str]:
    dev = Path(__file__).parents[1] / "qa" / "dev.tsv"
    return [line.split("\t")[0] for line in dev.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")]


def test_a_frozen_tokenizer_cuts_as_jieba_does_with_its_dict(words):
    plain = Tokenizer()
    plain.FREQ, plain.total, plain.initialized = dict(words), sum(words.values()), True
    frozen = pickle.loads(pickle.dumps(plain))
    frozen.freeze()
    assert isinstance(frozen.FREQ, WordTable)
    for question in _questions():
        # jieba's own get_DAG (two look-ups a fragment) against ours (one), and the cuts they lead to.
        assert frozen.get_DAG(question) == jieba.Tokenizer.get_DAG(plain, question), question
        assert list(frozen.cut_for_search(question)) == list(plain.cut_for_search(question)), question
        assert list(frozen.cut(question, HMM=False)) == list(plain.cut(question, HMM=False)), question
        assert frozen.likelihood(question) == plain.likelihood(question), question


def test_a_tokenizer_read_back_tells_jieba_again_which_words_never_to_join():
    word = "甲乙丙丁戊"  # no question has it: jieba's module-wide set is changed, then put back
    tokenizer = Tokenizer()
    tokenizer.FREQ, tokenizer.total, tokenizer.initialized = {"党费": 100}, 100, True
    try:
        tokenizer.add_word(word, 0)
        jieba.finalseg.Force_Split_Words.discard(word)  # as in a fresh process reading the index back
        again = pickle.loads(pickle.dumps(tokenizer))
        assert again.force_split == {word} and word in jieba.finalseg.Force_Split_Words
        assert again.lock is not tokenizer.lock
    finally:
        jieba.finalseg.Force_Split_Words.discard(word)
