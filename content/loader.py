"""Reading and checking the curated content: FAQ entries, documents, sources, dictionary and synonyms.

Layout of a content folder (see content/sources.toml for the citable documents):

    sources.toml          [[source]] name, short, year, kind ("central" or "local")
    faq/<topic>.toml      [[faq]] id, question, phrasings, answer, source, article?, tags, local
    docs/<slug>.md        +++ TOML front matter (id, title, source, tags) +++, then "## " sections
    dictionary.txt        jieba user-dictionary lines: word [frequency] [part of speech]
    synonyms.toml         [synonyms] canonical = ["variant", ...]
    scope.tsv             optional: members' questions, question<TAB>entry id or out_of_scope, that teach the
                          search what is in scope (content/classifier.py, ScopeClassifier)

`load_content` reads everything it can and returns the content with every problem found, each named
by file and line, so `zhibu content check` can list them all at once and the server can refuse to start.
This module imports nothing from bot/ or handlers/.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parent

ID_PATTERN = re.compile(r"[a-z0-9-]+")
MIN_PHRASINGS = 3
MAX_ANSWER_CHARS = 300
FAQ_KEYS = {"id", "question", "phrasings", "answer", "source", "article", "tags", "local"}
FAQ_REQUIRED = {"id", "question", "phrasings", "answer", "source", "tags", "local"}
DOC_KEYS = {"id", "title", "source", "tags"}
SOURCE_KINDS = {"central", "local"}
# Punctuation and spaces that do not make two questions different.
_NOISE = re.compile(r"[\s\u3000，。、？！?!,.；;：:“”\"'‘’（）()《》…~～-]+")


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    message: str

    def describe(self, base: Path | None = None) -> str:
        shown = self.path
        if base is not None:
            try:
                shown = self.path.relative_to(base)
            except ValueError:
                pass
        return f"{shown}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Source:
    name: str
    short: str
    year: int | None
    kind: str

    @property
    def local(self) -> bool:
        return self.kind == "local"


@dataclass(frozen=True)
class FaqEntry:
    id: str
    question: str
    phrasings: tuple[str, ...]
    answer: str
    source: str
    article: str
    tags: tuple[str, ...]
    local: bool
    path: Path
    line: int


@dataclass(frozen=True)
class Passage:
    """One "## " section of a document."""

    id: str  # "<doc id>#<n>", n counted from 1
    doc_id: str
    title: str  # the document's title
    heading: str
    text: str
    source: str
    tags: tuple[str, ...]
    path: Path
    line: int


@dataclass
class Content:
    sources: dict[str, Source] = field(default_factory=dict)
    faq: list[FaqEntry] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    # (word, frequency or None, tag or None)
    dictionary: list[tuple[str, int | None, str | None]] = field(default_factory=list)
    # variant -> canonical term
    synonyms: dict[str, str] = field(default_factory=dict)
    # (question, entry id or out_of_scope): members' questions labelled for the classifiers (scope.tsv)
    scope: list[tuple[str, str]] = field(default_factory=list)
    documents: int = 0

    def entry(self, entry_id: str) -> FaqEntry | None:
        return next((entry for entry in self.faq if entry.id == entry_id), None)


class ContentError(Exception):
    """The content has problems; the server refuses it (and keeps what it had on a reload)."""

    def __init__(self, problems: list[Problem], root: Path | None = None) -> None:
        self.problems = problems
        self.root = root
        lines = [problem.describe(root) for problem in problems[:20]]
        more = f"\n… and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} content problem(s):\n" + "\n".join(lines) + more)


def normalize_question(text: str) -> str:
    """A question with punctuation, spaces and case dropped: how duplicates are recognized."""
    return _NOISE.sub("", text).lower()


def load_content(root: Path | None = None) -> tuple[Content, list[Problem]]:
    """Everything under root, and every problem found (an empty list: the content is valid)."""
    root = Path(root or DEFAULT_ROOT)
    content, problems = Content(), []
    _load_sources(root / "sources.toml", content, problems)
    for path in sorted((root / "faq").glob("*.toml")):
        _load_faq_file(path, content, problems)
    for path in sorted((root / "docs").glob("*.md")):
        _load_document(path, content, problems)
    _load_dictionary(root / "dictionary.txt", content, problems)
    _load_synonyms(root / "synonyms.toml", content, problems)
    _load_scope(root / "scope.tsv", content, problems)
    _check_duplicates(content, problems)
    return content, problems


def load_valid_content(root: Path | None = None) -> Content:
    content, problems = load_content(root)
    if problems:
        raise ContentError(problems, Path(root or DEFAULT_ROOT))
    return content


# ---------------------------------------------------------------- files


def _parse_toml(path: Path, text: str, problems: list[Problem], first_line: int = 1) -> dict | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = re.search(r"line (\d+)", str(error))
        line = int(found.group(1)) + first_line - 1 if found else first_line
        problems.append(Problem(path, line, f"TOML 格式错误：{error}"))
        return None


def _read(path: Path, problems: list[Problem]) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problems.append(Problem(path, 1, "文件不是 UTF-8 编码"))
    except OSError as error:
        problems.append(Problem(path, 1, f"无法读取：{error}"))
    return None


def _table_lines(text: str, header: str) -> list[dict[str, int]]:
    """For each [[header]] table in order: the line of the header ("") and of each top-level key in it.

    tomllib reports no positions, so the positions come from a scan of the lines; multi-line values
    only need their key's line.
    """
    tables: list[dict[str, int]] = []
    current: dict[str, int] | None = None
    in_multiline = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        toggles = (stripped.count('"""') + stripped.count("'''")) % 2 == 1
        if in_multiline:
            in_multiline = not toggles
            continue
        in_multiline = toggles  # a key whose value opens a multi-line string still counts
        if stripped.startswith("[[") and stripped.rstrip().endswith("]]"):
            name = stripped.strip("[] \t")
            current = {"": number} if name == header else None
            if current is not None:
                tables.append(current)
            continue
        if stripped.startswith("[") and not stripped.startswith("[["):
            current = None
            continue
        key = re.match(r"([A-Za-z0-9_-]+)\s*=", stripped)
        if key and current is not None and key.group(1) not in current:
            current[key.group(1)] = number
    return tables


def _load_sources(path: Path, content: Content, problems: list[Problem]) -> None:
    if not path.exists():
        problems.append(Problem(path, 1, "缺少 sources.toml（可引用的文件清单）"))
        return
    text = _read(path, problems)
    data = _parse_toml(path, text, problems) if text is not None else None
    if data is None:
        return
    lines = _table_lines(text, "source")
    for index, table in enumerate(data.get("source", [])):
        where = lines[index] if index < len(lines) else {"": 1}
        line = where.get("", 1)
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(Problem(path, where.get("name", line), "source 缺少 name"))
            continue
        kind = table.get("kind", "central")
        if kind not in SOURCE_KINDS:
            problems.append(Problem(path, where.get("kind", line), f"source 的 kind 只能是 central 或 local，不是 {kind!r}"))
        if name in content.sources:
            problems.append(Problem(path, where.get("name", line), f"source 重复：{name}"))
        content.sources[name] = Source(name=name, short=str(table.get("short", name)),
                                       year=table.get("year"), kind=kind)


def _string_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _load_faq_file(path: Path, content: Content, problems: list[Problem]) -> None:
    text = _read(path, problems)
    data = _parse_toml(path, text, problems) if text is not None else None
    if data is None:
        return
    extra_tables = set(data) - {"faq"}
    if extra_tables:
        problems.append(Problem(path, 1, f"未知的表：{'、'.join(sorted(extra_tables))}（只允许 [[faq]]）"))
    tables = data.get("faq", [])
    if not isinstance(tables, list) or not tables:
        problems.append(Problem(path, 1, "文件里没有 [[faq]] 条目"))
        return
    lines = _table_lines(text, "faq")
    for index, table in enumerate(tables):
        where = lines[index] if index < len(lines) else {"": 1}
        entry = _faq_entry(path, table, where, content, problems)
        if entry is not None:
            content.faq.append(entry)


def _faq_entry(path: Path, table: dict, where: dict[str, int], content: Content,
               problems: list[Problem]) -> FaqEntry | None:
    start = where.get("", 1)

    def at(key: str) -> int:
        return where.get(key, start)

    before = len(problems)
    for key in sorted(set(table) - FAQ_KEYS):
        problems.append(Problem(path, at(key), f"未知字段 {key}"))
    for key in sorted(FAQ_REQUIRED - set(table)):
        problems.append(Problem(path, start, f"缺少字段 {key}"))
    entry_id = table.get("id")
    if "id" in table and (not isinstance(entry_id, str) or not ID_PATTERN.fullmatch(entry_id)):
        problems.append(Problem(path, at("id"), f"id 只能用小写字母、数字和连字符：{entry_id!r}"))
    for key in ("question", "answer", "source"):
        if key in table and not isinstance(table[key], str):
            problems.append(Problem(path, at(key), f"{key} 应为字符串"))
    question = table.get("question")
    if isinstance(question, str) and not question.strip():
        problems.append(Problem(path, at("question"), "question 为空"))
    answer = table.get("answer")
    if isinstance(answer, str):
        if not answer.strip():
            problems.append(Problem(path, at("answer"), "answer 为空"))
        elif len(answer.strip()) > MAX_ANSWER_CHARS:
            problems.append(Problem(path, at("answer"),
                                    f"answer 太长：{len(answer.strip())} 字（最多 {MAX_ANSWER_CHARS} 字）"))
    phrasings = table.get("phrasings")
    if "phrasings" in table:
        if not _string_list(phrasings):
            problems.append(Problem(path, at("phrasings"), "phrasings 应为字符串列表"))
        else:
            usable = [p for p in phrasings if p.strip()]
            if len(usable) < MIN_PHRASINGS:
                problems.append(Problem(path, at("phrasings"),
                                        f"phrasings 至少要 {MIN_PHRASINGS} 条，现有 {len(usable)} 条"))
            if len(usable) != len(phrasings):
                problems.append(Problem(path, at("phrasings"), "phrasings 里有空字符串"))
    source = table.get("source")
    if isinstance(source, str) and source not in content.sources:
        problems.append(Problem(path, at("source"), f"未知的来源 {source!r}（应为 sources.toml 里的 name）"))
    article = table.get("article", "")
    if not isinstance(article, str):
        problems.append(Problem(path, at("article"), "article 应为字符串，如 \"第九条\""))
    if "tags" in table and not _string_list(table["tags"]):
        problems.append(Problem(path, at("tags"), "tags 应为字符串列表"))
    if "local" in table and not isinstance(table["local"], bool):
        problems.append(Problem(path, at("local"), "local 应为 true 或 false"))
    if len(problems) > before:
        return None
    return FaqEntry(id=entry_id, question=question.strip(), phrasings=tuple(p.strip() for p in phrasings),
                    answer=answer.strip(), source=source, article=article.strip(), tags=tuple(table["tags"]),
                    local=table["local"], path=path, line=start)


def _load_document(path: Path, content: Content, problems: list[Problem]) -> None:
    text = _read(path, problems)
    if text is None:
        return
    lines = text.splitlines()
    if not lines or lines[0].strip() != "+++":
        problems.append(Problem(path, 1, "文档应以 +++ 开头的 TOML 前言开始"))
        return
    end = next((number for number in range(1, len(lines)) if lines[number].strip() == "+++"), None)
    if end is None:
        problems.append(Problem(path, 1, "前言没有以 +++ 结束"))
        return
    front = _parse_toml(path, "\n".join(lines[1:end]), problems, first_line=2)
    if front is None:
        return
    front_lines = {m.group(1): number for number, line in enumerate(lines[1:end], start=2)
                   if (m := re.match(r"\s*([A-Za-z0-9_-]+)\s*=", line))}
    before = len(problems)
    for key in sorted(set(front) - DOC_KEYS):
        problems.append(Problem(path, front_lines.get(key, 1), f"未知字段 {key}"))
    for key in sorted(DOC_KEYS - set(front)):
        problems.append(Problem(path, 1, f"前言缺少字段 {key}"))
    doc_id, title, source = front.get("id"), front.get("title"), front.get("source")
    if "id" in front and (not isinstance(doc_id, str) or not ID_PATTERN.fullmatch(doc_id)):
        problems.append(Problem(path, front_lines.get("id", 1), f"id 只能用小写字母、数字和连字符：{doc_id!r}"))
    if "title" in front and (not isinstance(title, str) or not title.strip()):
        problems.append(Problem(path, front_lines.get("title", 1), "title 应为非空字符串"))
    if "source" in front and (not isinstance(source, str) or source not in content.sources):
        problems.append(Problem(path, front_lines.get("source", 1),
                                f"未知的来源 {source!r}（应为 sources.toml 里的 name）"))
    if "tags" in front and not _string_list(front["tags"]):
        problems.append(Problem(path, front_lines.get("tags", 1), "tags 应为字符串列表"))
    sections: list[tuple[int, str, list[str]]] = []
    for number, line in enumerate(lines[end + 1:], start=end + 2):
        if line.startswith("## "):
            sections.append((number, line[3:].strip(), []))
        elif sections:
            sections[-1][2].append(line)
    if not sections:
        problems.append(Problem(path, end + 1, "文档没有 “## ” 小节（每个小节是一段可检索的内容）"))
    for number, heading, body in sections:
        if not heading:
            problems.append(Problem(path, number, "小节标题为空"))
        if not "\n".join(body).strip():
            problems.append(Problem(path, number, f"小节“{heading}”没有内容"))
    if len(problems) > before:
        return
    content.documents += 1
    for index, (number, heading, body) in enumerate(sections, start=1):
        content.passages.append(Passage(
            id=f"{doc_id}#{index}", doc_id=doc_id, title=title.strip(), heading=heading,
            text="\n".join(body).strip(), source=source, tags=tuple(front["tags"]), path=path, line=number))


def _load_dictionary(path: Path, content: Content, problems: list[Problem]) -> None:
    if not path.exists():
        return
    text = _read(path, problems)
    if text is None:
        return
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) > 3:
            problems.append(Problem(path, number, "每行应为：词 [频率] [词性]"))
            continue
        word, frequency, tag = parts[0], None, None
        rest = parts[1:]
        if rest and rest[0].isdigit():
            frequency = int(rest.pop(0))
        if rest:
            tag = rest.pop(0)
        if rest or (tag is not None and not re.fullmatch(r"[A-Za-z]+", tag)):
            problems.append(Problem(path, number, "每行应为：词 [频率] [词性]（频率是整数，词性是字母）"))
            continue
        content.dictionary.append((word, frequency, tag))


_BARE_UNICODE_KEY = re.compile(r"""^(\s*)([^\s"'=\[#][^=]*?)(\s*=)""", re.MULTILINE)


def _quote_bare_keys(text: str) -> str:
    """TOML 1.0 (tomllib) takes only ASCII bare keys; staff naturally write 缴纳党费 = [...], so such
    keys are quoted before parsing."""
    def quote(match: re.Match) -> str:
        key = match.group(2)
        if key.isascii():
            return match.group(0)
        return f'{match.group(1)}"{key}"{match.group(3)}'
    return _BARE_UNICODE_KEY.sub(quote, text)


def _load_synonyms(path: Path, content: Content, problems: list[Problem]) -> None:
    if not path.exists():
        return
    text = _read(path, problems)
    data = _parse_toml(path, _quote_bare_keys(text), problems) if text is not None else None
    if data is None:
        return
    key_lines = {m.group(1).strip('"'): number for number, line in enumerate(text.splitlines(), start=1)
                 if (m := re.match(r'\s*("[^"]+"|[^\s=\[]+)\s*=', line))}
    table = data.get("synonyms")
    if not isinstance(table, dict):
        problems.append(Problem(path, 1, "缺少 [synonyms] 表"))
        return
    for canonical, variants in table.items():
        line = key_lines.get(canonical, 1)
        if not _string_list(variants):
            problems.append(Problem(path, line, f"{canonical} 的同义词应为字符串列表"))
            continue
        for variant in variants:
            if not variant.strip() or variant == canonical:
                continue
            earlier = content.synonyms.get(variant)
            if earlier is not None and earlier != canonical:
                problems.append(Problem(path, line, f"“{variant}”同时是“{earlier}”和“{canonical}”的同义词"))
                continue
            content.synonyms[variant] = canonical


OUT_OF_SCOPE_LABEL = "out_of_scope"


def _load_scope(path: Path, content: Content, problems: list[Problem]) -> None:
    """scope.tsv: question<TAB>label, # a comment. Any label but out_of_scope is in scope: the entry it names
    may since have been merged or renamed, and the question is still one the content answers (the entry
    classifier learns only from labels naming an entry that exists)."""
    if not path.exists():
        return
    text = _read(path, problems)
    if text is None:
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        question, _, label = line.partition("\t")
        if not question.strip() or not label.strip():
            problems.append(Problem(path, number, "每行应为：问题<TAB>条目 id 或 out_of_scope"))
            continue
        content.scope.append((question.strip(), label.strip()))


def _check_duplicates(content: Content, problems: list[Problem]) -> None:
    ids: dict[str, tuple[Path, int]] = {}
    for entry in content.faq:
        if entry.id in ids:
            path, line = ids[entry.id]
            problems.append(Problem(entry.path, entry.line, f"id 重复：{entry.id}（已在 {path.name}:{line}）"))
        else:
            ids[entry.id] = (entry.path, entry.line)
    docs: dict[str, Path] = {}
    for passage in content.passages:
        if passage.doc_id in docs and docs[passage.doc_id] != passage.path:
            problems.append(Problem(passage.path, 1, f"文档 id 重复：{passage.doc_id}（已在 {docs[passage.doc_id].name}）"))
            docs[passage.doc_id] = passage.path
        docs.setdefault(passage.doc_id, passage.path)
        if passage.doc_id in ids:
            problems.append(Problem(passage.path, 1, f"文档 id 与问答条目 id 相同：{passage.doc_id}"))
    # The same question (or phrasing) in two entries makes the answer a coin toss.
    texts: dict[str, FaqEntry] = {}
    for entry in content.faq:
        for text in dict.fromkeys(normalize_question(t) for t in (entry.question, *entry.phrasings)):
            if not text:
                continue
            owner = texts.get(text)
            if owner is not None and owner.id != entry.id:
                problems.append(Problem(entry.path, entry.line,
                                        f"问法重复：“{text}”同时出现在 {entry.id} 和 {owner.id}（{owner.path.name}:{owner.line}）"))
            texts.setdefault(text, entry)
