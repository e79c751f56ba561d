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
so `zhibu content check` lists them all and the service refuses to start with a broken file. The rules for an
item's fields are `check_fields`, which the items staff add (handlers/study/plan.py) are checked by too. This
module imports nothing from bot/ or handlers/.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from content.loader import Problem, _table_lines

ITEM_KEYS = {"id", "title", "summary", "minutes", "starts", "ends", "source", "link", "doc", "org", "questions"}
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
    if "id" not in table:
        problem("", "missing 'id'")
    else:
        if not isinstance(table["id"], str) or not ID_PATTERN.fullmatch(table["id"]):
            problem("id", "id must be lowercase letters, digits and hyphens")
        elif table["id"] in seen:
            problem("id", "id used twice in this file")
        else:
            seen.add(table["id"])
    if "source" not in table:
        problem("", "missing 'source'")
    issues = check_fields(table, docs=docs, sources=sources)
    for issue in issues:
        problem(issue.key, issue.describe())
    if len(problems) > before:
        return None
    return entry_of(table, key=f"file:{path.stem}:{table['id']}", source=table["source"])


# ---------------------------------------------------------------- the rules every item keeps
#
# A file item and an item staff add (handlers/study/plan.py: `zhibu study add`, the XLSX plan, the console) are
# checked by the same function. It reports each problem as an Issue (the field, what is wrong, the figures) so
# that each caller words it for its readers: `zhibu content check` in English for whoever edits the files, the
# plan's row report and the console's form in Chinese.

FIELDS_REQUIRED = ("title", "summary", "minutes", "starts", "ends")
MAX_SUMMARY = 500
MAX_LINK = 500  # the column's width
MIN_OPTIONS, MAX_OPTIONS = 2, 6
MIN_MINUTES, MAX_MINUTES = 1, 600

ISSUE_TEXTS = {
    "missing": "missing {key!r}",
    "empty": "{key} must be non-empty text",
    "title_long": f"title longer than {MAX_TITLE} characters",
    "summary_long": f"summary longer than {MAX_SUMMARY} characters",
    "source": "source {value!r} is not in sources.toml",
    "minutes": f"minutes must be a whole number from {MIN_MINUTES} to {MAX_MINUTES}",
    "date": "{key} is not a date (write 2027-01-04)",
    "period": "the period ends ({ends}) before it starts ({starts})",
    "not_text": "{key} must be text",
    "link": "link must start with https:// or http://",
    "link_long": f"link longer than {MAX_LINK} characters",
    "doc": "doc {value!r} is no document in content/docs",
    "questions": f"questions must be at most {MAX_QUESTIONS} [[item.questions]] tables",
    "question_table": "question {number} must be a table",
    "question_key": "question {number}: unknown key {value!r}",
    "question": "question {number}: missing the question",
    "options": f"question {{number}}: options must be {MIN_OPTIONS} to {MAX_OPTIONS} texts",
    "answer": "question {number}: answer {value!r} is not one of the options 1–{count}",
}


@dataclass(frozen=True)
class Issue:
    """One broken rule: the field at fault ("" for the item as a whole), which rule (a key of ISSUE_TEXTS) and
    the figures its message names (number: a question's number, from 1)."""

    key: str
    code: str
    values: dict = field(default_factory=dict)

    def describe(self) -> str:
        return ISSUE_TEXTS[self.code].format(key=self.key, **self.values)


def check_fields(table: dict, *, docs: set[str], sources: set[str] | None = None) -> list[Issue]:
    """Every rule an item's fields break, in the fields' order: title and summary non-empty text (title at most
    MAX_TITLE characters, summary MAX_SUMMARY), minutes a whole number from 1 to 600, starts and ends dates with
    starts ≤ ends, link http(s), doc one of `docs`, org text, source one of `sources` (not checked when None),
    0–3 questions each with its text, 2–6 options and the right option's number. Missing optional keys are fine."""
    issues: list[Issue] = []
    issues += [Issue(key, "missing") for key in FIELDS_REQUIRED if key not in table]
    keys = ("title", "summary") + (("source",) if sources is not None else ())
    for key in keys:
        if key in table and (not isinstance(table[key], str) or not table[key].strip()):
            issues.append(Issue(key, "empty"))
    if isinstance(table.get("title"), str) and len(table["title"]) > MAX_TITLE:
        issues.append(Issue("title", "title_long"))
    if isinstance(table.get("summary"), str) and len(table["summary"]) > MAX_SUMMARY:
        issues.append(Issue("summary", "summary_long"))
    if sources is not None and isinstance(table.get("source"), str) and table["source"].strip() \
            and table["source"] not in sources:
        issues.append(Issue("source", "source", {"value": table["source"]}))
    minutes = table.get("minutes")
    if "minutes" in table and (not isinstance(minutes, int) or isinstance(minutes, bool)
                               or not MIN_MINUTES <= minutes <= MAX_MINUTES):
        issues.append(Issue("minutes", "minutes", {"value": minutes}))
    starts, ends = _date(table.get("starts")), _date(table.get("ends"))
    for key, value in (("starts", starts), ("ends", ends)):
        if key in table and value is None:
            issues.append(Issue(key, "date", {"value": table[key]}))
    if starts and ends and ends < starts:
        issues.append(Issue("ends", "period", {"starts": starts, "ends": ends}))
    for key in ("link", "doc", "org"):
        if key in table and not isinstance(table[key], str):
            issues.append(Issue(key, "not_text"))
    link = table.get("link")
    if isinstance(link, str) and link and not link.startswith(("https://", "http://")):
        issues.append(Issue("link", "link", {"value": link}))
    elif isinstance(link, str) and len(link) > MAX_LINK:
        issues.append(Issue("link", "link_long"))
    if isinstance(table.get("doc"), str) and table["doc"] and table["doc"] not in docs:
        issues.append(Issue("doc", "doc", {"value": table["doc"]}))
    issues += _question_issues(table.get("questions", []))
    return issues


def _question_issues(raw) -> list[Issue]:
    if not isinstance(raw, list) or len(raw) > MAX_QUESTIONS:
        return [Issue("questions", "questions", {"count": len(raw) if isinstance(raw, list) else 0})]
    issues: list[Issue] = []
    for number, entry in enumerate(raw, start=1):
        if not isinstance(entry, dict):
            issues.append(Issue("questions", "question_table", {"number": number}))
            continue
        for key in sorted(set(entry) - QUESTION_KEYS):
            issues.append(Issue("questions", "question_key", {"number": number, "value": key}))
        text, options, answer = entry.get("question"), entry.get("options"), entry.get("answer")
        if not isinstance(text, str) or not text.strip():
            issues.append(Issue("questions", "question", {"number": number}))
        if not isinstance(options, list) or not MIN_OPTIONS <= len(options) <= MAX_OPTIONS or \
                not all(isinstance(option, str) and option.strip() for option in options):
            issues.append(Issue("questions", "options", {"number": number}))
            continue
        if not isinstance(answer, int) or isinstance(answer, bool) or not 1 <= answer <= len(options):
            issues.append(Issue("questions", "answer", {"number": number, "value": answer, "count": len(options)}))
    return issues


def entry_of(table: dict, *, key: str, source: str) -> StudyEntry:
    """The item a table that check_fields passed describes (texts trimmed at both ends; org without its
    outer slashes)."""
    questions = tuple(Question(entry["question"].strip(), tuple(option.strip() for option in entry["options"]),
                               entry["answer"]) for entry in table.get("questions", []))
    return StudyEntry(key=key, title=table["title"].strip(), summary=table["summary"].strip(),
                      minutes=table["minutes"], starts=_date(table["starts"]), ends=_date(table["ends"]),
                      source=source, link=table.get("link", ""), doc=table.get("doc", ""),
                      org=table.get("org", "").strip().strip("/"), questions=questions)
