"""Finding the curated answer to a member's question, or knowing that there is none.

Text is cut with jieba (with the domain dictionary), after colloquial variants are mapped to their
canonical terms (synonyms.toml). Each text becomes jieba's search-mode words plus its character
pairs, so a partial or mistyped term still shares most of its tokens with the right entry.

Two BM25 indexes (bm25s) answer a question: FAQ texts (every entry's standard question and its
phrasings; an entry scores as its best-matching text) first, document passages second. BM25 ranks;
the confidence is a separate, bounded number: how much of the question's weight (inverse document
frequency) the best-matching text covers, blended with how much of that text the question covers.
Thresholds on it (tuned on tests/qa/dev*.tsv with bench/qa_eval.py) decide between answering,
"您是不是想问" suggestions, and declining.

This module imports nothing from bot/ or handlers/.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from content.loader import DEFAULT_ROOT, Content, ContentError, Passage, load_content

log = logging.getLogger(__name__)
logging.getLogger("bm25s").setLevel(logging.WARNING)

ANSWERED, UNSURE, OUT_OF_SCOPE = "answered", "unsure", "out_of_scope"

# Confidence at or above which we answer; at or above SUGGEST we offer choices; below, we decline.
ANSWER_THRESHOLD = 0.44
SUGGEST_THRESHOLD = 0.40
# A passage answers instead of the FAQ only when it is clearly the better match.
PASSAGE_MARGIN = 0.08
MAX_SUGGESTIONS = 3
# A FAQ entry that beats every other candidate by this much is answered even below ANSWER_THRESHOLD,
# down to this floor: a clear winner is rarely wrong (tuned on the dev set with bench/qa_eval.py).
CLEAR_WINNER_FLOOR = 0.30
CLEAR_WINNER_MARGIN = 0.15
RANK_BY_CONFIDENCE = True
PASSAGE_FACTOR = 0.7
INDEX_ANSWERS = False
# Character pairs weigh less than words in the confidence: they mostly echo the words they overlap.
PAIR_WEIGHT = 0.5

# Words that carry no topic: question words, particles, pronouns.
STOPWORDS = frozenset("""
的 了 吗 呢 啊 吧 呀 嘛 么 哦 噢 呗 啦 哈 嗯 吖 哇 着 过 地 得 之 所 和 与 及 或 跟 同 把 被 让 给 对 向 从 在 于
我 你 您 他 她 它 咱 我们 你们 他们 她们 咱们 大家 自己 人家 俺 俺们 这 那 这个 那个 这些 那些 这样 那样 这么 那么
是 有 没 没有 不 不是 就 都 也 还 还是 又 再 才 很 太 挺 最 更 要 想 会 能 能不能 可以 可不可以 可能 应该 需要 得要 用
怎么 怎么样 怎样 如何 怎么办 咋 咋办 咋样 啥 什么 什么样 哪 哪些 哪个 哪里 哪儿 几 多少 为什么 为啥 是否 是不是 有没有
请问 请 问 问下 问一下 一下 一个 一些 一点 些 个 吧 呢 啊 的话 知道 告诉 说说 讲讲 了解 情况 事 事情 东西 规定 要求
""".split())
# Characters that make a character pair worthless on their own ("的党", "费吗").
_PARTICLES = frozenset("的了吗呢啊吧呀嘛么哦呗啦着过地得我你您他她它这那是有没不就都也还又再很太要想会能可以怎咋啥什哪几为请问些个")
# Characters that never belong to a topic word: a pair with one of them is noise.
_FILLERS = frozenset("的了吗呢啊吧呀嘛哦呗啦着么咋啥")
# Character pairs inside stopwords ("么样" of 怎么样) say no more than the stopwords.
_STOP_PAIRS = frozenset(word[i:i + 2] for word in STOPWORDS for i in range(len(word) - 1))
# Topics the bot never answers; a question built on one of these is out of scope unless it matches
# an entry almost word for word.
OUT_OF_DOMAIN = frozenset("""
天气 下雨 下雪 气温 温度 刮风 台风 预报 股票 基金 彩票 炒股 房价 油价 菜价 肉价 猪价 粮价 价格 行情 涨价 降价
笑话 唱歌 唱首歌 电影 电视剧 游戏 小说 音乐 快递 外卖 导航 火车票 机票 车票 高铁 星座 算命 运势 减肥 菜谱 做饭 怎么做菜
足球 篮球 比赛 明星 你是谁 你叫什么 你几岁 你好 您好 在吗 早上好 晚上好 晚安 谢谢 哈哈 呵呵 无聊 聊天 聊聊
翻译 英语 数学题 作文 医院挂号 挂号 看病 感冒 发烧 吃药 养猪 种地 化肥 农药 种子 打工 招工 工资 贷款 利息 银行卡 手机话费 话费
""".split())


@dataclass(frozen=True)
class Suggestion:
    id: str
    question: str


@dataclass
class Answer:
    """What the search decided about one question."""

    question: str
    status: str
    confidence: float
    answer: str = ""  # the answer text itself (for a passage, its whole text)
    source: str = ""  # "《中国共产党章程》第九条"
    source_name: str = ""
    article: str = ""
    local: bool = False
    entry_id: str | None = None  # a FAQ id, or "<doc id>#<n>" for a passage
    kind: str | None = None  # "faq" or "passage"
    title: str = ""  # for a passage: "title · heading"
    suggestions: list[Suggestion] = field(default_factory=list)
    # The best candidates whatever the thresholds, best first: (id, confidence); for evaluation.
    ranked: list[tuple[str, float]] = field(default_factory=list, repr=False)

    def to_json(self) -> dict:
        return {"question": self.question, "status": self.status, "answer": self.answer, "source": self.source,
                "local": self.local, "confidence": round(self.confidence, 3), "id": self.entry_id,
                "kind": self.kind, "suggestions": [{"id": s.id, "question": s.question} for s in self.suggestions]}


def source_line(source: str, article: str, local: bool) -> str:
    line = f"来源：《{source}》{article}"
    return line + "（这是各地常见做法，具体以本乡镇党委的要求为准）" if local else line


# ---------------------------------------------------------------- text analysis


_BASE_LOCK = threading.Lock()
_BASE_TOKENIZER = None
_CJK = re.compile(r"[\u4e00-\u9fff]+")
_WORD = re.compile(r"[\u4e00-\u9fffA-Za-z0-9.%]+")


def _base_tokenizer():
    """jieba's main dictionary, read once per process; every Analyzer copies its word table."""
    global _BASE_TOKENIZER
    with _BASE_LOCK:
        if _BASE_TOKENIZER is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            tokenizer = jieba.Tokenizer()
            tokenizer.initialize()
            _BASE_TOKENIZER = tokenizer
        return _BASE_TOKENIZER


class Analyzer:
    """Text → tokens: jieba search-mode words (with the domain dictionary) and character pairs."""

    def __init__(self, dictionary: Iterable[tuple[str, int | None, str | None]] = (),
                 synonyms: dict[str, str] | None = None) -> None:
        import jieba

        base = _base_tokenizer()
        self._jieba = jieba.Tokenizer()
        # Sharing the parsed main dictionary saves a second of start-up per index; our words go into
        # this copy only, so two indexes (a reload, a test) never see each other's words.
        self._jieba.FREQ, self._jieba.total = dict(base.FREQ), base.total
        self._jieba.initialized = True
        self.synonyms = {self._fold(variant): self._fold(canonical) for variant, canonical in (synonyms or {}).items()}
        words = {word for word, _, _ in dictionary} | set(self.synonyms.values())
        for word, frequency, tag in dictionary:
            self._jieba.add_word(self._fold(word), frequency, tag)
        for word in words - {w for w, _, _ in dictionary}:
            self._jieba.add_word(word)
        # A dictionary word that merely contains a variant (第一书记 holds 书记) stays as it is.
        self._replacements = dict(self.synonyms)
        for word in words:
            folded = self._fold(word)
            if folded not in self._replacements and any(v in folded and v != folded for v in self.synonyms):
                self._replacements[folded] = folded
        variants = sorted(self._replacements, key=len, reverse=True)
        self._variants = re.compile("|".join(map(re.escape, variants))) if variants else None

    @staticmethod
    def _fold(text: str) -> str:
        return unicodedata.normalize("NFKC", text).lower().strip()

    def canonical(self, text: str) -> str:
        text = self._fold(text)
        if self._variants is not None:
            text = self._variants.sub(lambda match: self._replacements[match.group()], text)
        return text

    def tokens(self, text: str) -> list[str]:
        text = self.canonical(text)
        words = [word for chunk in _WORD.findall(text) for word in self._jieba.cut_for_search(chunk, HMM=True)]
        result = [word for word in words if word.strip() and word not in STOPWORDS
                  and not (len(word) == 1 and word in _PARTICLES)]
        for run in _CJK.findall(text):
            for start in range(len(run) - 1):
                pair = run[start:start + 2]
                if pair in _STOP_PAIRS or pair[0] in _FILLERS or pair[1] in _FILLERS \
                        or (pair[0] in _PARTICLES and pair[1] in _PARTICLES):
                    continue
                result.append("~" + pair)
        return result

    def words(self, text: str) -> list[str]:
        """The plain jieba words of text (after synonyms): for the out-of-domain check."""
        return [word for word in self._jieba.cut(self.canonical(text), HMM=False) if word.strip()]


def _weight(token: str) -> float:
    return PAIR_WEIGHT if token.startswith("~") else 1.0


# ---------------------------------------------------------------- the index


class _Collection:
    """A BM25 index over texts, each belonging to one item (an FAQ entry or a passage)."""

    def __init__(self, texts: list[list[str]], owners: list[int], items: int) -> None:
        import bm25s

        self.size = items
        self.owners = np.asarray(owners, dtype=np.int64)
        self.token_sets = [frozenset(tokens) for tokens in texts]
        self.document_frequency: dict[str, int] = {}
        for tokens in self.token_sets:
            for token in tokens:
                self.document_frequency[token] = self.document_frequency.get(token, 0) + 1
        self.retriever = None
        if texts:
            self.retriever = bm25s.BM25()
            self.retriever.index([tokens or [""] for tokens in texts], show_progress=False)
        # Texts are added item by item, so each item's texts are one contiguous run.
        self.starts = np.flatnonzero(np.r_[True, self.owners[1:] != self.owners[:-1]]) if len(owners) else \
            np.zeros(0, dtype=np.int64)

    def item_scores(self, query: list[str]) -> np.ndarray:
        """Each item's best text score (items with no texts do not occur)."""
        if self.retriever is None:
            return np.zeros(0)
        ids = self.retriever.get_tokens_ids(query)
        if not ids:
            return np.zeros(self.size)
        scores = self.retriever.get_scores_from_ids(ids)
        best = np.maximum.reduceat(scores, self.starts)
        full = np.zeros(self.size)
        full[self.owners[self.starts]] = best
        return full

    def best_text(self, item: int, query: list[str]) -> int:
        """Of an item's texts, the one whose tokens cover the query best."""
        start = int(np.searchsorted(self.owners, item, side="left"))
        stop = int(np.searchsorted(self.owners, item, side="right"))
        query_set = set(query)
        return max(range(start, stop), key=lambda index: len(query_set & self.token_sets[index]))


class QaIndex:
    """The searchable form of one version of the content."""

    def __init__(self, content: Content, *, extra_passages: Iterable[Passage] = ()) -> None:
        self.content = content
        self.analyzer = Analyzer(content.dictionary, content.synonyms)
        self.faq = list(content.faq)
        self.passages = [*content.passages, *extra_passages]
        self.faq_by_id = {entry.id: entry for entry in self.faq}
        self.passage_by_id = {passage.id: passage for passage in self.passages}
        faq_texts, faq_owners = [], []
        for number, entry in enumerate(self.faq):
            texts = (entry.question, *entry.phrasings) + ((entry.answer,) if INDEX_ANSWERS else ())
            for text in dict.fromkeys(texts):
                faq_texts.append(self.analyzer.tokens(text))
                faq_owners.append(number)
        passage_texts = [self.analyzer.tokens(f"{p.title} {p.heading}\n{p.text}") for p in self.passages]
        self._faq = _Collection(faq_texts, faq_owners, len(self.faq))
        self._passages = _Collection(passage_texts, list(range(len(self.passages))), len(self.passages))
        # The FAQ's document frequencies weigh query words: a word most questions share says little.
        self._texts = max(1, len(faq_texts))
        self._unseen_idf = self._idf(0)
        self._ood = frozenset(self.analyzer.canonical(word) for word in OUT_OF_DOMAIN)

    def _idf(self, frequency: int) -> float:
        return math.log(1 + (self._texts - frequency + 0.5) / (frequency + 0.5))

    def _token_weight(self, token: str) -> float:
        frequency = self._faq.document_frequency.get(token, 0)
        return _weight(token) * (self._idf(frequency) if frequency else self._unseen_idf)

    def _confidence(self, query: list[str], text: frozenset[str]) -> float:
        """How well one text matches: the share of the query's weight it covers, blended with the share
        of its own weight the query covers (so a long question echoing one word stays unsure)."""
        query_set = set(query)
        if not query_set or not text:
            return 0.0
        covered = sum(self._token_weight(token) for token in query_set & text)
        total = sum(self._token_weight(token) for token in query_set)
        own = sum(self._token_weight(token) for token in text)
        recall = covered / total if total else 0.0
        precision = covered / own if own else 0.0
        return 0.75 * recall + 0.25 * precision

    def _ranked(self, collection: _Collection, query: list[str], limit: int) -> list[tuple[int, float]]:
        scores = collection.item_scores(query)
        if scores.size == 0:
            return []
        count = min(limit, scores.size)
        top = np.argpartition(-scores, count - 1)[:count]
        top = top[np.argsort(-scores[top])]
        ranked = []
        for item in top:
            if scores[item] <= 0:
                break
            text = collection.best_text(int(item), query)
            ranked.append((int(item), self._confidence(query, collection.token_sets[text])))
        if RANK_BY_CONFIDENCE:
            ranked.sort(key=lambda pair: -pair[1])
        return ranked

    def out_of_domain(self, question: str) -> bool:
        words = self.analyzer.words(question)
        text = self.analyzer.canonical(question)
        return any(word in self._ood for word in words) or any(len(w) >= 3 and w in text for w in self._ood)

    def search(self, question: str, *, answer_threshold: float = ANSWER_THRESHOLD,
               suggest_threshold: float = SUGGEST_THRESHOLD) -> Answer:
        return self._decide(question, answer_threshold, suggest_threshold)

    def _decide(self, question: str, answer_threshold: float, suggest_threshold: float) -> Answer:
        query = self.analyzer.tokens(question)
        faq = self._ranked(self._faq, query, 10)
        passages = [(i, c * PASSAGE_FACTOR) for i, c in self._ranked(self._passages, query, 5)]
        ranked = sorted([(self.faq[i].id, c) for i, c in faq] + [(self.passages[i].id, c) for i, c in passages],
                        key=lambda pair: -pair[1])[:5]
        result = self._choose(question, faq, passages, answer_threshold, suggest_threshold)
        result.ranked = ranked
        return result

    def _choose(self, question, faq, passages, answer_threshold, suggest_threshold) -> Answer:
        best_faq = faq[0][1] if faq else 0.0
        best_passage = passages[0][1] if passages else 0.0
        if self.out_of_domain(question):
            # Only a near-verbatim match overrides the out-of-domain words ("党费交多少钱").
            answer_threshold, suggest_threshold = max(answer_threshold, 0.8), max(suggest_threshold, 0.8)
        if faq and best_faq >= answer_threshold and best_faq + PASSAGE_MARGIN >= best_passage:
            return self._faq_answer(question, faq[0])
        if passages and best_passage >= answer_threshold:
            return self._passage_answer(question, passages[0])
        runner_up = max([confidence for _, confidence in faq[1:2]] + [best_passage])
        if faq and best_faq >= CLEAR_WINNER_FLOOR and best_faq - runner_up >= CLEAR_WINNER_MARGIN \
                and not self.out_of_domain(question):
            return self._faq_answer(question, faq[0])
        confidence = max(best_faq, best_passage)
        if confidence >= suggest_threshold:
            choices = [(f"f{item}", c) for item, c in faq[:MAX_SUGGESTIONS]] + \
                      [(f"p{item}", c) for item, c in passages[:MAX_SUGGESTIONS]]
            choices.sort(key=lambda pair: -pair[1])
            floor = max(suggest_threshold * 0.8, confidence * 0.6)
            suggestions = [self._suggestion(key) for key, c in choices[:MAX_SUGGESTIONS] if c >= floor]
            return Answer(question=question, status=UNSURE, confidence=confidence, suggestions=suggestions)
        return Answer(question=question, status=OUT_OF_SCOPE, confidence=confidence)

    def _suggestion(self, key: str) -> Suggestion:
        number = int(key[1:])
        if key[0] == "f":
            entry = self.faq[number]
            return Suggestion(entry.id, entry.question)
        passage = self.passages[number]
        return Suggestion(passage.id, f"{passage.title}：{passage.heading}")

    def _faq_answer(self, question: str, ranked: tuple[int, float]) -> Answer:
        entry = self.faq[ranked[0]]
        return self.answer_of(entry.id, question=question, confidence=ranked[1])

    def _passage_answer(self, question: str, ranked: tuple[int, float]) -> Answer:
        return self.answer_of(self.passages[ranked[0]].id, question=question, confidence=ranked[1])

    def answer_of(self, item_id: str, *, question: str = "", confidence: float = 1.0) -> Answer | None:
        """The answer for an entry or passage by id (a suggestion the member picked)."""
        entry = self.faq_by_id.get(item_id)
        if entry is not None:
            return Answer(question=question, status=ANSWERED, confidence=confidence, answer=entry.answer,
                          source=f"《{entry.source}》{entry.article}", source_name=entry.source,
                          article=entry.article, local=entry.local,
                          entry_id=entry.id, kind="faq")
        passage = self.passage_by_id.get(item_id)
        if passage is not None:
            return Answer(question=question, status=ANSWERED, confidence=confidence, answer=passage.text,
                          source=f"《{passage.source}》", source_name=passage.source, local=self._source_is_local(passage.source)
                          and passage.source != "支部助手使用说明", entry_id=passage.id, kind="passage",
                          title=f"{passage.title}·{passage.heading}")
        return None

    def _source_is_local(self, name: str) -> bool:
        source = self.content.sources.get(name)
        return source is not None and source.local


# ---------------------------------------------------------------- the current index of a content folder


def _fingerprint(root: Path) -> tuple:
    files = [root / "sources.toml", root / "dictionary.txt", root / "synonyms.toml",
             *sorted((root / "faq").glob("*.toml")), *sorted((root / "docs").glob("*.md"))]
    stamp = []
    for path in files:
        try:
            status = path.stat()
        except OSError:
            continue
        stamp.append((str(path), status.st_mtime_ns, status.st_size))
    return tuple(stamp)


class IndexHolder:
    """The last good index of a content folder. A reload that fails keeps serving the previous one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._index: QaIndex | None = None
        self._lock = threading.Lock()
        self.fingerprint: tuple = ()
        self.last_error: ContentError | None = None

    def load(self) -> QaIndex:
        """Build the index from the files now; raises ContentError (keeping the old index) on problems."""
        with self._lock:
            fingerprint = _fingerprint(self.root)
            content, problems = load_content(self.root)
            if problems:
                self.last_error = ContentError(problems, self.root)
                self.fingerprint = fingerprint  # do not retry the same broken files every poll
                raise self.last_error
            index = QaIndex(content)
            self._index, self.fingerprint, self.last_error = index, fingerprint, None
            log.info("content loaded from %s: %d FAQ entries, %d documents (%d passages)",
                     self.root, len(content.faq), content.documents, len(content.passages))
            return index

    def reload(self) -> bool:
        """Load again; on failure log the problems and keep the last good index. True if it loaded."""
        try:
            self.load()
            return True
        except ContentError as error:
            log.error("content reload failed; still serving the previous content. %s", error)
            return False

    @property
    def loaded(self) -> bool:
        return self._index is not None

    def changed(self) -> bool:
        return _fingerprint(self.root) != self.fingerprint

    @property
    def index(self) -> QaIndex:
        if self._index is None:
            self.load()
        return self._index


_HOLDERS: dict[Path, IndexHolder] = {}
_HOLDERS_LOCK = threading.Lock()


def holder_for(root: Path | None = None) -> IndexHolder:
    """The process's holder for a content folder (the package's own content by default)."""
    key = Path(root or DEFAULT_ROOT).resolve()
    with _HOLDERS_LOCK:
        holder = _HOLDERS.get(key)
        if holder is None:
            holder = _HOLDERS[key] = IndexHolder(key)
        return holder
