"""What the study modules share: the router and the check-question dialog's steps."""

from __future__ import annotations

from pathlib import Path

from bot.dialogs import Steps
from bot.dispatch import Router
from handlers.study.settings import StudySettings

# Its member page (page.py) renders templates/.
router = Router("study", settings=StudySettings, templates=Path(__file__).parent / "templates")
router.reminds("每周学习内容的推送")

QUIZ = Steps("study_quiz", answer="小题的答案（数字）")
