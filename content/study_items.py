"""Reading and checking the study items under content/study/ (issue 16).

Each file holds [[item]] tables:

    [[item]]
    id = "tiaoli-xueshi"              # unique in the file; the database keeps the item by "file:<file>:<id>"
    title = "…"                       # at most 100 characters
    summary = \"\"\"a few lines\"\"\"
    minutes = 20                      # estimated minutes (1–600)
    starts = 2027-01-04               # the period, a TOML date (or "2027-01-04")
    ends = 2027-01-31
    source = "中国共产党党员教育管理工作条例"   # a name from content/sources.toml
    link = "https://…"                # optional
    doc = "xuexi"                     # optional: a curated document's id (content/docs)
    org = "示范县委/城关镇党委"        # optional: the publishing organization's path; default everyone

    [[item.questions]]                # optional, 1–3
    question = "…"
    options = ["…", "…", "…"]
    answer = 2                        # the right option's number, from 1

`load_study_items` returns the items and every problem found, each naming the file, the line and the item,
so `zhibu content check` lists them all and the service refuses to start with a broken file. This module
imports nothing from bot/ or handlers/.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from content.loader import Problem, _table_lines

ITEM_KEYS = {"id", "title", "summary", "minutes", "starts", "ends", "source", "link", "doc", "org", "questions"}
ITEM_REQUIRED = ("id", "title", "summary", "minutes", "starts", "ends", "source")
QUESTION_KEYS = {"question", "options", "answer"}
MAX_QUESTIONS = 3
MAX_TITLE = 100
ID_PATTERN = re.compile(r"[a-z0-9-]+")


@dataclass(frozen=True)
class Question:
    question: str
    options: tuple[str, ...]
    answer: int  # the right option's number, from 1


@dataclass(frozen=True)
class StudyEntry:
    key: str
    title: str
    summary: str
    minutes: int
    starts: date
    ends: date
    source: str
    link: str = ""
    doc: str = ""
    org: str = ""
    questions: tuple[Question, ...] = field(default_factory=tuple)


def _source_names(root: Path) -> set[str]:
    try:
        data = tomllib.loads((root / "sources.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return set()
    return {entry.get("name") for entry in data.get("source", []) if isinstance(entry, dict)}


def doc_titles(root: Path) -> dict[str, str]:
    """The curated documents' ids and titles (from their front matter)."""
    titles = {}
    for path in sorted((root / "docs").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        found = re.search(r'^id\s*=\s*"([^"]+)"', text, re.MULTILINE)
        title = re.search(r'^title\s*=\s*"([^"]+)"', text, re.MULTILINE)
        if found:
            titles[found.group(1)] = title.group(1) if title else ""
    return titles


def _date(value) -> date | None:
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def load_study_items(root: Path, folder: Path | None = None) -> tuple[list[StudyEntry], list[Problem]]:
    """The items of every *.toml in folder (default root/study), with the problems found; sources and
    documents are those of the content folder root."""
    items: list[StudyEntry] = []
    problems: list[Problem] = []
    folder = folder if folder is not None else root / "study"
    if not folder.is_dir():
        return items, problems
    sources, docs = _source_names(root), set(doc_titles(root))
    for path in sorted(folder.glob("*.toml")):
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except (OSError, UnicodeDecodeError) as error:
            problems.append(Problem(path, 1, f"cannot read: {error}"))
            continue
        except tomllib.TOMLDecodeError as error:
            problems.append(Problem(path, getattr(error, "lineno", 1) or 1, f"not valid TOML: {error}"))
            continue
        unknown = set(data) - {"item"}
        if unknown:
            problems.append(Problem(path, 1, f"unknown top-level keys {sorted(unknown)}: a study file holds [[item]] tables"))
        tables = data.get("item", [])
        if not isinstance(tables, list):
            problems.append(Problem(path, 1, "item must be [[item]] tables"))
            continue
        lines = _table_lines(text, "item")
        seen: set[str] = set()
        for index, table in enumerate(tables):
            where = lines[index] if index < len(lines) else {"": 1}
            entry = _item(path, table, where, sources, docs, seen, problems)
            if entry is not None:
                items.append(entry)
    return items, problems


def _item(path: Path, table: dict, where: dict[str, int], sources: set[str], docs: set[str], seen: set[str],
          problems: list[Problem]) -> StudyEntry | None:
    name = table.get("id") if isinstance(table.get("id"), str) else f"#{len(seen) + 1}"
    before = len(problems)

    def problem(key: str, message: str) -> None:
        problems.append(Problem(path, where.get(key, where.get("", 1)), f"item {name!r}: {message}"))

    for key in sorted(set(table) - ITEM_KEYS):
        problem(key, f"unknown key {key!r}")
    for key in ITEM_REQUIRED:
        if key not in table:
            problem("", f"missing {key!r}")
    if "id" in table:
        if not isinstance(table["id"], str) or not ID_PATTERN.fullmatch(table["id"]):
            problem("id", "id must be lowercase letters, digits and hyphens")
        elif table["id"] in seen:
            problem("id", "id used twice in this file")
        else:
            seen.add(table["id"])
    for key in ("title", "summary", "source"):
        if key in table and (not isinstance(table[key], str) or not table[key].strip()):
            problem(key, f"{key} must be non-empty text")
    if isinstance(table.get("title"), str) and len(table["title"]) > MAX_TITLE:
        problem("title", f"title longer than {MAX_TITLE} characters")
    if isinstance(table.get("source"), str) and table["source"].strip() and table["source"] not in sources:
        problem("source", f"source {table['source']!r} is not in sources.toml")
    minutes = table.get("minutes")
    if "minutes" in table and (not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 600):
        problem("minutes", "minutes must be a whole number from 1 to 600")
    starts, ends = _date(table.get("starts")), _date(table.get("ends"))
    for key, value in (("starts", starts), ("ends", ends)):
        if key in table and value is None:
            problem(key, f"{key} is not a date (write 2027-01-04)")
    if starts and ends and ends < starts:
        problem("ends", f"the period ends ({ends}) before it starts ({starts})")
    for key in ("link", "doc", "org"):
        if key in table and not isinstance(table[key], str):
            problem(key, f"{key} must be text")
    if isinstance(table.get("link"), str) and table["link"] and not table["link"].startswith(("https://", "http://")):
        problem("link", "link must start with https:// or http://")
    if isinstance(table.get("doc"), str) and table["doc"] and table["doc"] not in docs:
        problem("doc", f"doc {table['doc']!r} is no document in content/docs")
    questions: list[Question] = []
    raw = table.get("questions", [])
    if not isinstance(raw, list) or len(raw) > MAX_QUESTIONS:
        problem("questions", f"questions must be at most {MAX_QUESTIONS} [[item.questions]] tables")
        raw = []
    for number, entry in enumerate(raw, start=1):
        if not isinstance(entry, dict):
            problem("questions", f"question {number} must be a table")
            continue
        for key in sorted(set(entry) - QUESTION_KEYS):
            problem("questions", f"question {number}: unknown key {key!r}")
        text, options, answer = entry.get("question"), entry.get("options"), entry.get("answer")
        if not isinstance(text, str) or not text.strip():
            problem("questions", f"question {number}: missing the question")
        if not isinstance(options, list) or not 2 <= len(options) <= 6 or \
                not all(isinstance(option, str) and option.strip() for option in options):
            problem("questions", f"question {number}: options must be 2 to 6 texts")
            continue
        if not isinstance(answer, int) or isinstance(answer, bool) or not 1 <= answer <= len(options):
            problem("questions", f"question {number}: answer {answer!r} is not one of the options 1–{len(options)}")
            continue
        if isinstance(text, str) and text.strip():
            questions.append(Question(text.strip(), tuple(option.strip() for option in options), answer))
    if len(problems) > before:
        return None
    return StudyEntry(key=f"file:{path.stem}:{table['id']}", title=table["title"].strip(),
                      summary=table["summary"].strip(), minutes=minutes, starts=starts, ends=ends,
                      source=table["source"], link=table.get("link", ""), doc=table.get("doc", ""),
                      org=table.get("org", "").strip().strip("/"), questions=tuple(questions))
