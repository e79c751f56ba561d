"""jieba's tokenizer as a Q&A index keeps it: jieba's main dictionary plus the domain words, in one table.

jieba reads its main dictionary (some 350,000 words, from its own cache file in the temp folder) in about
half a second, and adding the domain dictionary and the synonyms to a copy of it takes a few hundredths
more. A built index carries the finished word table, so a process that reads the index from the cache
(content/index_cache.py) reads neither jieba's dictionary nor ours.

jieba keeps the table as a dict of half a million words and prefixes: some 70 MB in each process (a string
object of 80 bytes per two-character word, a dict entry, often an int), and a seventh of a second to read
back. Once the index is built its words are fixed, and a WordTable holds the same words and frequencies in
one string and four flat arrays (some 11 MB, read back in a hundredth of a second). A look-up there is a Python call rather
than a dict's, but a question makes a few hundred of them: the search takes the same time within the noise
(bench/qa_eval.py), and gives the same answers (a test compares every word).

The tokenizer also answers the two questions the slip check asks (content/homophones.py): is this a word,
and how likely is this cut; bound methods of the tokenizer, not of the analyzer, so that an index has no
reference cycle and is freed the moment the last search using it ends.
"""

from __future__ import annotations

import logging
import sys
import threading
from array import array
from collections.abc import Mapping
from zlib import crc32


def _import_jieba():
    """jieba 0.42 imports pkg_resources only to open its own data files, and falls back to a plain open()
    when it cannot. Importing pkg_resources scans every installed distribution: most of jieba's import time
    (80 ms of 90) and some megabytes that stay. It is kept out while jieba is imported, and only then: an
    import elsewhere later gets it as usual."""
    if "jieba" in sys.modules or "pkg_resources" in sys.modules:
        import jieba
        return jieba
    sys.modules["pkg_resources"] = None  # an import of it now raises ImportError
    try:
        import jieba
    finally:
        if sys.modules.get("pkg_resources", False) is None:
            del sys.modules["pkg_resources"]
    return jieba


jieba = _import_jieba()

_MAIN_LOCK = threading.Lock()
_MAIN: Tokenizer | None = None


class Tokenizer(jieba.Tokenizer):
    """A jieba tokenizer that can be pickled with its word table (its lock is made anew when read back)."""

    def __init__(self) -> None:
        super().__init__()
        # Words added with frequency 0: jieba then tells its unknown-word model, a module-wide set, never to
        # join them; a process that reads the tokenizer back must tell it again.
        self.force_split: set[str] = set()

    def add_word(self, word: str, freq: int | None = None, tag: str | None = None) -> None:
        super().add_word(word, freq, tag)
        if freq is not None and int(freq) == 0:
            self.force_split.add(word)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.lock = threading.RLock()
        for word in self.force_split:
            jieba.finalseg.add_force_split(word)

    def freeze(self) -> None:
        """No more words will be added: keep the word table compact (WordTable)."""
        if not isinstance(self.FREQ, WordTable):
            self.FREQ = WordTable(self.FREQ)

    def get_DAG(self, sentence: str) -> dict[int, list[int]]:  # noqa: N802 (jieba's name)
        """jieba's get_DAG with one look-up per fragment where jieba makes two (`in`, then `[]`)."""
        self.check_initialized()
        frequency = self.FREQ.get
        graph: dict[int, list[int]] = {}
        length = len(sentence)
        for start in range(length):
            ends = []
            end = start
            fragment = sentence[start]
            while end < length:
                count = frequency(fragment)
                if count is None:
                    break
                if count:
                    ends.append(end)
                end += 1
                fragment = sentence[start:end + 1]
            graph[start] = ends or [start]
        return graph

    def is_word(self, text: str) -> bool:
        return self.FREQ.get(text, 0) > 0

    def likelihood(self, text: str) -> float:
        """The log probability of jieba's best cut of text under its word-frequency model."""
        graph = self.get_DAG(text)
        route: dict[int, tuple[float, int]] = {}
        self.calc(text, graph, route)
        return route[0][0]


def with_main_dictionary() -> Tokenizer:
    """A tokenizer with its own copy of jieba's main dictionary (read once per process): words added to
    it go into this copy only, so two indexes (a reload, a test) never see each other's words."""
    global _MAIN
    with _MAIN_LOCK:
        if _MAIN is None:
            jieba.setLogLevel(logging.WARNING)
            main = Tokenizer()
            main.initialize()
            _MAIN = main
    tokenizer = Tokenizer()
    tokenizer.FREQ, tokenizer.total = dict(_MAIN.FREQ), _MAIN.total
    tokenizer.initialized = True
    return tokenizer


class WordTable(Mapping):
    """A fixed word → frequency table in flat arrays: an open-addressing hash table (CRC-32 of the word's
    UTF-16, linear probing, at most half full) over the words laid end to end in one string.

    A look-up in the arrays costs some forty times a dict's, and segmenting one question asks the table a few
    hundred times, mostly for the same characters and pairs: the answers found last are kept in a plain dict
    (at most RECENT of them, emptied when full; never pickled), so a served question pays the arrays' price for
    its rare fragments only."""

    RECENT = 20_000
    __slots__ = ("_text", "_starts", "_lengths", "_values", "_slots", "_mask", "_recent")

    def __init__(self, words: Mapping[str, int]) -> None:
        self._text = "".join(words)
        lengths = [len(word) for word in words]
        starts, position = [], 0
        for length in lengths:
            starts.append(position)
            position += length
        self._starts = _narrowest(starts)
        self._lengths = _narrowest(lengths)
        self._values = _narrowest(list(words.values()))
        size = 8
        while size < 2 * len(words):
            size *= 2
        self._mask = size - 1
        self._slots = array("i", [-1]) * size
        for entry, word in enumerate(words):
            slot = _hash(word) & self._mask
            while self._slots[slot] >= 0:
                slot = (slot + 1) & self._mask
            self._slots[slot] = entry
        self._recent: dict[str, int | None] = {}

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__ if name != "_recent"}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self._recent = {}

    def get(self, word: str, default=None):
        recent = self._recent
        found = recent.get(word, _UNKNOWN)
        if found is _UNKNOWN:
            found = self._look_up(word)
            if len(recent) >= self.RECENT:
                recent.clear()
            recent[word] = found
        return default if found is None else found

    def _look_up(self, word: str) -> int | None:
        slots, mask, lengths, starts, text = self._slots, self._mask, self._lengths, self._starts, self._text
        slot = _hash(word) & mask
        length = len(word)
        while True:
            entry = slots[slot]
            if entry < 0:
                return None
            # The same length and the same characters at the entry's place: the same word, without a slice.
            if lengths[entry] == length and text.startswith(word, starts[entry]):
                return self._values[entry]
            slot = (slot + 1) & mask

    def __getitem__(self, word: str) -> int:
        found = self.get(word)
        if found is None:
            raise KeyError(word)
        return found

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self.get(word) is not None

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self):
        for start, length in zip(self._starts, self._lengths):
            yield self._text[start:start + length]


_UNKNOWN = object()  # not yet looked up (None: looked up and absent)


def _narrowest(numbers: list[int]) -> array:
    """numbers in the smallest array type that holds them all (word lengths fit a byte, frequencies four)."""
    low, high = min(numbers, default=0), max(numbers, default=0)
    for code in ("B", "H", "i", "q"):
        probe = array(code)
        bits = 8 * probe.itemsize
        lowest, highest = (0, 2 ** bits - 1) if code.isupper() else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if lowest <= low and high <= highest:
            return array(code, numbers)
    return array("q", numbers)  # beyond 64 bits: let array say so


def _hash(word: str) -> int:
    # Not hash(): a str's hash differs from process to process, and the table is built in another one.
    return crc32(word.encode("utf-16-le", "surrogatepass"))
