"""Answers worked out for the asker rather than looked up: dues from the income they state (content/dues.py),
党龄, the 50-year medal and 转正 from the date they give (content/party_years.py), study hours still to do from
the hours they have (content/study_hours.py).

The search tries these before anything else: a question they compute gets its own figure with the rule it rests
on, standing for the FAQ entry of its topic (so evaluation and the console see which one). This module imports
nothing from bot/ or handlers/.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Computed:
    """An answer worked out for the asker: the entries it stands for (the first the content has), its text and
    the rule it rests on."""

    entry_ids: tuple[str, ...]
    text: str
    source: str
    article: str = ""


def compute_answer(question: str, today: date) -> Computed | None:
    from content import dues, party_years, study_hours  # they import Computed from here

    return dues.compute(question) or party_years.compute(question, today) or study_hours.compute(question)
