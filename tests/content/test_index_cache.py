"""The Q&A index kept between starts (content/index_cache.py), built in a child process (content/index_build.py)."""

from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from content import index_build, index_cache
from content.loader import DEFAULT_ROOT, ContentError, load_valid_content
from content.search import ANSWERED, IndexHolder, QaIndex
from sample_content import FAQ


DOC = '''+++
id = "zhuti-dangri"
title = "主题党日"
source = "中国共产党支部工作条例（试行）"
tags = ["主题党日"]
+++
## 主题党日怎么安排
每月固定一天开展主题党日，提前通知党员。
'''


def write_content(root: Path) -> Path:
    (root / "faq").mkdir(parents=True)
    (root / "docs").mkdir()
    shutil.copy(DEFAULT_ROOT / "sources.toml", root / "sources.toml")
    (root / "faq" / "sample.toml").write_text(FAQ, encoding="utf-8")
    (root / "docs" / "zhuti-dangri.md").write_text(DOC, encoding="utf-8")
    (root / "synonyms.toml").write_text('[synonyms]\n缴纳党费 = ["交党费", "缴党费"]\n', encoding="utf-8")
    (root / "dictionary.txt").write_text("五必访 100 n\n", encoding="utf-8")
    return root


@dataclass
class Built:
    root: Path
    cache: Path

    def cache_copy(self, folder: Path) -> Path:
        """A cache folder of the test's own, holding this content's index (the key names the content's
        folder, so the content stays where it is)."""
        shutil.copytree(self.cache, folder)
        return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    """Small content whose index was built once and cached (tests copy the cache, never change it)."""
    folder = tmp_path_factory.mktemp("built")
    root, cache = write_content(folder / "content"), folder / "cache"
    holder = IndexHolder(root, cache)
    holder.load()
    assert holder.builds == 1
    return Built(root, cache)


def the_cache_file(cache: Path, root: Path) -> Path:
    return index_cache.cache_file(cache, root)


def test_a_second_start_reads_the_index_from_the_cache(built, tmp_path, caplog):
    cache = built.cache_copy(tmp_path / "cache")
    holder = IndexHolder(built.root, cache)
    with caplog.at_level(logging.INFO, logger="content"):
        index = holder.load()
    assert holder.builds == 0
    assert any("(from the cache)" in record.getMessage() for record in caplog.records)
    result = index.search("农村党员党费交多少")
    assert (result.status, result.entry_id) == (ANSWERED, "dues-farmer")


def test_the_key_covers_every_content_file_the_code_and_python(tmp_path, monkeypatch):
    root = write_content(tmp_path / "content")
    first = index_cache.content_key(root)
    assert index_cache.content_key(root) == first
    # A file touched but not changed is the same content.
    (root / "faq" / "sample.toml").touch()
    assert index_cache.content_key(root) == first
    seen = {first}

    def changed() -> str:
        key = index_cache.content_key(root)
        assert key not in seen
        seen.add(key)
        return key

    for name in ("sources.toml", "faq/sample.toml", "docs/zhuti-dangri.md", "dictionary.txt", "synonyms.toml"):
        path = root / name
        path.write_bytes(path.read_bytes() + b"\n")
        changed()
    (root / "faq" / "more.toml").write_text("", encoding="utf-8")
    changed()
    (root / "dictionary.txt").unlink()
    changed()
    # The code under content/ shapes the index: a change to any module is another key.
    code = tmp_path / "code"
    shutil.copytree(index_cache.CODE_DIR, code, ignore=shutil.ignore_patterns("__pycache__", "*.toml", "*.txt",
                                                                             "faq", "docs", "study"))
    monkeypatch.setattr(index_cache, "CODE_DIR", code)
    same_code = index_cache.content_key(root)
    (code / "homophones.py").write_text((code / "homophones.py").read_text(encoding="utf-8") + "\n# a change\n",
                                        encoding="utf-8")
    changed()
    assert same_code in seen
    monkeypatch.setattr(sys, "version", sys.version + " (another build)")
    changed()
    monkeypatch.setattr(index_cache.metadata, "version", lambda name: "0.0.0-other")
    changed()


def test_a_changed_content_file_makes_the_cache_stale_and_is_built_again(tmp_path, caplog):
    root, cache = write_content(tmp_path / "content"), tmp_path / "cache"
    assert IndexHolder(root, cache).index.search("五必访指什么").entry_id == "visit-five"
    path = root / "faq" / "sample.toml"
    path.write_text(FAQ.replace('"五必访指什么"', '"五必访都有哪些"'), encoding="utf-8")
    holder = IndexHolder(root, cache)
    with caplog.at_level(logging.INFO, logger="content"):
        index = holder.load()
    assert holder.builds == 1
    assert any("is stale" in record.getMessage() for record in caplog.records)
    assert index.faq_by_id["visit-five"].phrasings[1] == "五必访都有哪些"
    # The file now holds the new content's index.
    again = IndexHolder(root, cache)
    assert again.load().faq_by_id["visit-five"].phrasings[1] == "五必访都有哪些" and again.builds == 0


def test_a_code_change_makes_the_cache_stale(built, tmp_path, monkeypatch, caplog):
    cache = built.cache_copy(tmp_path / "cache")
    code = tmp_path / "code"
    code.mkdir()
    for module in index_cache.CODE_DIR.glob("*.py"):
        shutil.copy(module, code / module.name)
    monkeypatch.setattr(index_cache, "CODE_DIR", code)
    holder = IndexHolder(built.root, cache)
    holder.load()
    assert holder.builds == 0  # the same code
    (code / "search.py").write_text((code / "search.py").read_text(encoding="utf-8") + "\n# tuned\n",
                                    encoding="utf-8")
    holder = IndexHolder(built.root, cache)
    with caplog.at_level(logging.INFO, logger="content"):
        holder.load()
    assert holder.builds == 1 and "is stale" in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "not ours"])
def test_a_corrupt_cache_file_is_built_again_and_replaced(built, tmp_path, caplog, damage):
    cache = built.cache_copy(tmp_path / "cache")
    path = the_cache_file(cache, built.root)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00garbage\n" + data[100:200])
    holder = IndexHolder(built.root, cache)
    with caplog.at_level(logging.WARNING, logger="content"):
        index = holder.load()
    assert holder.builds == 1 and index.search("五必访指什么").entry_id == "visit-five"
    assert any("corrupt" in record.getMessage() or "not ours" in record.getMessage() for record in caplog.records)
    # Replaced by a whole one: the next start reads it.
    again = IndexHolder(built.root, cache)
    again.load()
    assert again.builds == 0


def test_an_unreadable_and_unwritable_cache_never_stops_the_start(built, tmp_path, caplog):
    cache = tmp_path / "cache"
    the_cache_file(cache, built.root).mkdir(parents=True)  # a folder where the file should be
    holder = IndexHolder(built.root, cache)
    with caplog.at_level(logging.WARNING, logger="content"):
        index = holder.load()
    assert holder.builds == 1 and index.search("五必访指什么").entry_id == "visit-five"
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "unreadable" in messages and "could not write" in messages
    assert not list(cache.glob(".qa-index-*.tmp"))  # no temporary file left behind


def test_a_reload_with_broken_content_keeps_the_old_index_and_the_cache(tmp_path):
    root, cache = write_content(tmp_path / "content"), tmp_path / "cache"
    holder = IndexHolder(root, cache)
    first = holder.index
    good = (root / "faq" / "sample.toml").read_bytes()
    (root / "faq" / "sample.toml").write_text(FAQ.replace('id = "visit-five"', 'id = "dues-farmer"'),
                                              encoding="utf-8")
    assert holder.reload() is False
    assert holder.index is first and isinstance(holder.last_error, ContentError)
    assert holder.builds == 1  # the child built nothing: it found the problems
    # The cache still holds the good content's index: with the files put back, a start reads it.
    (root / "faq" / "sample.toml").write_bytes(good)
    again = IndexHolder(root, cache)
    again.load()
    assert again.builds == 0


def test_when_the_child_process_fails_the_index_is_built_here(tmp_path, monkeypatch, caplog):
    root = write_content(tmp_path / "content")

    def fail(root, file, start):
        file.write(b"half a pickle")  # what a killed child may leave
        raise index_build.BuildFailed("exit status -9: killed")

    monkeypatch.setattr(index_build, "_build_in_child", fail)
    holder = IndexHolder(root, tmp_path / "cache")
    with caplog.at_level(logging.ERROR, logger="content"):
        assert holder.index.search("五必访指什么").entry_id == "visit-five"
    assert "building it in this process" in caplog.text


def test_an_index_read_back_answers_as_the_index_built_here(shipped_index):
    """The served index is a pickle read back (from the cache or from the child process): it must answer every
    question exactly as an index built in this process."""
    here = QaIndex(load_valid_content(DEFAULT_ROOT))
    served = shipped_index
    questions = [line.split("\t")[0] for line in
                 (Path(__file__).parents[1] / "qa" / "dev.tsv").read_text(encoding="utf-8").splitlines()
                 if line and not line.startswith("#")]
    assert len(questions) > 400
    for question in questions:
        expected, found = here.search(question), served.search(question)
        assert (found.status, found.entry_id, [s.id for s in found.suggestions]) == \
            (expected.status, expected.entry_id, [s.id for s in expected.suggestions]), question
        assert found.confidence == pytest.approx(expected.confidence, abs=1e-9), question
