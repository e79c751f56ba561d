"""Reading and checking the curated content: every problem is named with its file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from content.loader import DEFAULT_ROOT, ContentError, load_content, load_valid_content

ENTRY = """[[faq]]
id = "{id}"
question = "{question}"
phrasings = [{phrasings}]
answer = "{answer}"
source = "{source}"
article = "第九条"
tags = ["党费"]
local = false
"""


def entry(id="dues-missing", question="不交党费会怎么样？", phrasings=("半年没交党费有事吗", "长期不缴党费怎么处理", "忘了交党费要紧吗"),
          answer="连续六个月不交纳党费，被认为是自行脱党。", source="中国共产党章程") -> str:
    quoted = ", ".join(f'"{p}"' for p in phrasings)
    return ENTRY.format(id=id, question=question, phrasings=quoted, answer=answer, source=source)


DOC = """+++
id = "sanhui"
title = "三会一课"
source = "中国共产党支部工作条例（试行）"
tags = ["三会一课"]
+++
开头的说明。

## 支委会
支委会一般每月召开一次。

## 党员大会
党员大会一般每季度召开一次。
"""


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "faq").mkdir()
    (tmp_path / "docs").mkdir()
    shutil.copy(DEFAULT_ROOT / "sources.toml", tmp_path / "sources.toml")
    return tmp_path


def messages(problems) -> list[str]:
    return [f"{p.path.name}:{p.line}: {p.message}" for p in problems]


def test_valid_content_loads(root):
    (root / "faq" / "dues.toml").write_text(entry() + "\n" + entry(id="dues-rate", question="党费交多少？",
                                            phrasings=("党费标准", "每月交几块党费", "工资三千党费多少")), encoding="utf-8")
    (root / "docs" / "sanhui.md").write_text(DOC, encoding="utf-8")
    (root / "synonyms.toml").write_text('[synonyms]\n缴纳党费 = ["交党费", "缴党费"]\n"发展党员" = ["入党"]\n',
                                        encoding="utf-8")
    (root / "dictionary.txt").write_text("# comment\n三会一课 100 n\n一肩挑\n四议两公开 n\n", encoding="utf-8")
    content = load_valid_content(root)
    assert [e.id for e in content.faq] == ["dues-missing", "dues-rate"]
    assert content.faq[0].article == "第九条" and content.faq[0].line == 1 and content.faq[1].line == 11
    assert [(p.id, p.heading, p.text, p.line) for p in content.passages] == [
        ("sanhui#1", "支委会", "支委会一般每月召开一次。", 9), ("sanhui#2", "党员大会", "党员大会一般每季度召开一次。", 12)]
    # Bare Chinese keys are not TOML 1.0, but staff write them naturally; they are accepted.
    assert content.synonyms == {"交党费": "缴纳党费", "缴党费": "缴纳党费", "入党": "发展党员"}
    assert content.dictionary == [("三会一课", 100, "n"), ("一肩挑", None, None), ("四议两公开", None, "n")]


def test_each_problem_is_named_with_file_and_line(root):
    bad = (entry()
           + "\n" + entry(id="dues-again", question="不交党费会怎么样", phrasings=("a1", "a2", "a3"))  # same question
           + "\n" + entry(id="Bad_ID", question="问题三", phrasings=("b1", "b2"), answer="")
           + "\n" + entry(id="too-long", question="问题四", phrasings=("c1", "c2", "c3"), answer="很" * 301)
           + "\n" + entry(id="dangling", question="问题五", phrasings=("d1", "d2", "忘了交党费要紧吗"), source="不存在的文件")
           + '\n[[faq]]\nid = "incomplete"\nquestion = "问题六"\ncolour = "red"\n')
    (root / "faq" / "dues.toml").write_text(bad, encoding="utf-8")
    (root / "docs" / "empty.md").write_text('+++\nid = "empty"\ntitle = "空"\nsource = "中国共产党章程"\ntags = []\n+++\n只有开头。\n',
                                            encoding="utf-8")
    (root / "docs" / "nofront.md").write_text("## 小节\n内容\n", encoding="utf-8")
    found = messages(load_content(root)[1])
    expected = [
        "dues.toml:22: id 只能用小写字母、数字和连字符：'Bad_ID'",
        "dues.toml:25: answer 为空",
        "dues.toml:24: phrasings 至少要 3 条，现有 2 条",
        "dues.toml:35: answer 太长：301 字（最多 300 字）",
        "dues.toml:46: 未知的来源 '不存在的文件'（应为 sources.toml 里的 name）",
        "dues.toml:54: 未知字段 colour",
        "dues.toml:51: 缺少字段 answer",
        "empty.md:6: 文档没有 “## ” 小节（每个小节是一段可检索的内容）",
        "nofront.md:1: 文档应以 +++ 开头的 TOML 前言开始",
    ]
    for line in expected:
        assert line in found, (line, found)
    assert any(m.startswith("dues.toml:11: 问法重复：“不交党费会怎么样”") for m in found), found
    assert not any("dangling" in m and "问法重复" in m for m in found)  # entries with problems are left out


def test_duplicate_ids_across_files(root):
    (root / "faq" / "a.toml").write_text(entry(), encoding="utf-8")
    (root / "faq" / "b.toml").write_text("# another topic\n" + entry(question="别的问题", phrasings=("x1", "x2", "x3")),
                                         encoding="utf-8")
    assert messages(load_content(root)[1]) == ["b.toml:2: id 重复：dues-missing（已在 a.toml:1）"]


def test_broken_toml_reports_its_line(root):
    (root / "faq" / "x.toml").write_text('[[faq]]\nid = "a"\nquestion = "没有结束\n', encoding="utf-8")
    (problem,) = load_content(root)[1]
    assert problem.path.name == "x.toml" and problem.line == 3 and "TOML" in problem.message


def test_load_valid_content_raises_with_every_problem(root):
    (root / "faq" / "x.toml").write_text(entry(source="没有这个"), encoding="utf-8")
    with pytest.raises(ContentError) as raised:
        load_valid_content(root)
    assert "x.toml:6" in str(raised.value)


def test_scope_questions_are_read_with_their_side_and_a_bad_line_is_named(root):
    (root / "faq" / "a.toml").write_text(entry(), encoding="utf-8")
    (root / "scope.tsv").write_text("# comment\n村干部工资多少\tout_of_scope\n\n党费交多少\tdues-missing\n没有标签\n",
                                    encoding="utf-8")
    content, problems = load_content(root)
    assert content.scope == [("村干部工资多少", "out_of_scope"), ("党费交多少", "dues-missing")]
    assert messages(problems) == ["scope.tsv:5: 每行应为：问题<TAB>条目 id 或 out_of_scope"]


def test_the_shipped_content_is_valid():
    content, problems = load_content(DEFAULT_ROOT)
    assert not problems, "\n".join(p.describe(DEFAULT_ROOT) for p in problems)
    assert content.faq, "content/faq has no entries"


def test_content_check_command(root):
    (root / "faq" / "dues.toml").write_text(entry(), encoding="utf-8")
    result = CliRunner().invoke(main, ["content", "check"], env={"ZHIBU_CONTENT_DIR": str(root)})
    assert result.exit_code == 0 and "1 条问答" in result.output
    (root / "faq" / "bad.toml").write_text(entry(id="other", answer=""), encoding="utf-8")
    result = CliRunner().invoke(main, ["content", "check"], env={"ZHIBU_CONTENT_DIR": str(root)})
    assert result.exit_code == 1
    assert "faq/bad.toml:5: answer 为空" in result.output
