"""Sound-alike slips in domain terms: 情假 for 请假, 党非 for 党费, 三会一颗 for 三会一课, 五必防 for 五必访.

Members type with pinyin keyboards or speak to WeChat's voice input; both put a character that sounds like
the right one. A run of characters is read as a domain term when

- it has the term's length and differs from it in exactly one character,
- that character can be pronounced like the term's character (tones and the accent mergers zh/z, ch/c,
  sh/s, -ing/-in, -eng/-en, l/n ignored; any of a character's readings counts),
- the run is not a word of its own (回忆 is no slip for 会议),
- exactly one term fits,
- and the sentence reads much better with the term: jieba's word model must find the corrected run (up to
  SLIP_CONTEXT characters either side of the term) SLIP_COST (in natural log) more likely than the run as
  written, about 25 times (请假|发 against 情|假发, a wig: 4.4; 党员|大会 against 党|远大|会: 7.6; but 过世 for
  犯过事 only 0.6 and 请假人 for 请家人 3.1).

One wrong character only: a run that shares less with a term is more often another word than a slip.

The readings come from pypinyin's character table (its JSON data file, read directly: importing pypinyin
itself loads its phrase dictionary too, 50 MB and most of a second, which this check does not need).
"""

from __future__ import annotations

import importlib.util
import json
import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

# How much likelier (natural log) the corrected run must be than the run as written: the price of assuming
# a slip. Set on the slips and the false fixes found in our FAQ texts and evaluation questions.
SLIP_COST = 3.2
# The likelihoods are compared over the text around a possible slip, this many characters either side, not
# over the whole run: jieba's best cut changes only near the changed character, and a bounded window keeps a
# long message from costing the square of its length (a 6,000-character run once took 15 s). On every FAQ
# text, answer, passage and evaluation question the fixes are exactly those of comparing whole runs, already
# with 6 characters either side; 16 leaves room.
SLIP_CONTEXT = 16
FOUND_MAX = 200_000
# Characters so common that, written where a term has a sound-alike, they are far more often meant as
# written: 不交党费 is not 补交党费, 绑定吗 is not 绑定码, 村有 is not a slip.
_FUNCTION_CHARS = frozenset("不吗嘛么码的地得了着过是有没在和与跟就都也还又再很太要想会能可一个们这那哪吧呢啊呀哦我你他她它咱俺啥咋怎几多少")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
_UNKNOWN = object()
# Longest accent merger first: "zh" must become "z" before a lone "h" could be touched (none is).
_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("l", "n"))
_FINALS = (("ing", "in"), ("eng", "en"))


def _fuzzy(syllable: str) -> str:
    """A toneless syllable with the accent mergers applied: "zhōng" → "zon", "lǜ" → "nu"."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", syllable) if not unicodedata.combining(c))
    for spoken, merged in _INITIALS:
        if plain.startswith(spoken):
            plain = merged + plain[len(spoken):]
            break
    for spoken, merged in _FINALS:
        if plain.endswith(spoken):
            plain = plain[: -len(spoken)] + merged
            break
    return plain


@lru_cache(maxsize=1)
def _reading_table() -> dict[int, str]:
    spec = importlib.util.find_spec("pypinyin")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pypinyin is not installed; it is a dependency of zhibu (pip install -e .)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pinyin_dict.json"
    return {int(code): readings for code, readings in json.loads(path.read_text(encoding="utf-8")).items()}


@lru_cache(maxsize=65536)
def readings(char: str) -> frozenset[str]:
    """Every way a character can be read, toneless and accent-merged; empty for a character pypinyin lacks."""
    table = _reading_table().get(ord(char), "")
    return frozenset(_fuzzy(reading) for reading in table.split(",") if reading)


class HomophoneFixer:
    """Puts domain terms back where a sound-alike character replaced one of theirs."""

    def __init__(self, terms: dict[str, str], is_word: Callable[[str], bool],
                 likelihood: Callable[[str], float]) -> None:
        """terms: each domain term (a dictionary word, a synonym variant) → the term to put back (a variant's
        canonical term: 青假 is a known slip for 请假, and 情假 should become 请假, not 青假)."""
        self._is_word = is_word
        self._likelihood = likelihood
        self._canonical = {term: canonical for term, canonical in terms.items() if _CJK_RUN.fullmatch(term)}
        self._terms = frozenset(self._canonical)
        # Each term with one character masked ("请假" → "?假", "请?"): a run with one slip has the same masked
        # form as its term, so finding the terms a run may stand for is one look-up per character.
        self._by_mask: dict[str, list[str]] = {}
        for term in sorted(self._terms):
            for position in range(len(term)):
                self._by_mask.setdefault(_masked(term, position), []).append(term)
        self._lengths = sorted({len(term) for term in self._terms}, reverse=True)
        # The first characters of the terms, and the rest of each (see _fix_run).
        self._heads = frozenset(term[0] for term in self._terms)
        self._tails = frozenset(term[1:] for term in self._terms)
        # window → its term: the same windows recur in every text. Emptied when it grows past FOUND_MAX, so a
        # server that reads questions for months does not keep every window it ever saw.
        self._found: dict[str, str | None] = {}

    def __getstate__(self) -> dict:
        # Pickled (content/index_cache.py) without the look-ups made while the index was built: tens of
        # thousands of windows of FAQ texts, worth less than the room they take in the file and in memory.
        return self.__dict__ | {"_found": {}}

    def fix(self, text: str) -> str:
        if not self._terms:
            return text
        return _CJK_RUN.sub(lambda match: self._fix_run(match.group()), text)

    def _fix_run(self, run: str) -> str:
        # Longest terms first; each fix is kept only if the text around it reads better for it. Only
        # SLIP_CONTEXT characters either side are compared: every check costs the same however long the run,
        # so a run is read in time linear in its length (comparing whole runs made a long message quadratic).
        text = run
        taken: list[bool] | None = None  # the characters of terms put back, once there is one
        heads, tails = self._heads, self._tails
        for length in self._lengths:
            for start in range(len(text) - length + 1):
                stop = start + length
                window = text[start:stop]
                # A window matches a term with one character masked only if its first character is the
                # term's, or the masked one is the first and the rest is the term's rest: two set look-ups
                # turn away nearly every window before the masked look-ups (and the cache stays small).
                if window[0] not in heads and window[1:] not in tails:
                    continue
                if taken is not None and any(taken[start:stop]):
                    continue
                term = self._term_for(window)
                if term is None:
                    continue
                before = text[max(0, start - SLIP_CONTEXT):start]
                after = text[stop:stop + SLIP_CONTEXT]
                if self._likelihood(before + term + after) - self._likelihood(before + window + after) > SLIP_COST:
                    text = text[:start] + term + text[stop:]
                    taken = taken or [False] * len(text)
                    taken[start:stop] = [True] * length
        return text

    def _term_for(self, window: str) -> str | None:
        # Searches run in worker threads (handlers/qa.py): another one may empty the cache between a store
        # and a read, so the result is kept in a local rather than read back.
        term = self._found.get(window, _UNKNOWN)
        if term is _UNKNOWN:
            if len(self._found) >= FOUND_MAX:
                self._found.clear()
            term = self._found[window] = self._look_up(window)
        return term

    def _look_up(self, window: str) -> str | None:
        if window in self._terms:
            return None
        fits = [term for position, written in enumerate(window) if written not in _FUNCTION_CHARS
                for term in self._by_mask.get(_masked(window, position), ())
                if readings(written) & readings(term[position])]
        # Terms that mean the same (青假 is a listed slip for 请假) are one fit; the synonym map does the rest.
        if not fits or len({self._canonical[term] for term in fits}) > 1 or self._is_word(window):
            return None
        return min(fits, key=lambda term: (term != self._canonical[term], term))


def _masked(text: str, position: int) -> str:
    return text[:position] + "?" + text[position + 1:]
