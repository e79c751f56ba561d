"""What the care modules share: the router and its dialogs' steps."""

from __future__ import annotations

from pathlib import Path

from bot.dialogs import Steps
from bot.dispatch import Router
from handlers.care.settings import CareSettings
from storage.models import BRANCH_LEADERS

# Its member page (page.py) and console pages (console.py) render templates/.
router = Router("care", settings=CareSettings, templates=Path(__file__).parent / "templates")
router.reminds("走访的逾期提醒与每日清单", roles=BRANCH_LEADERS)

# Branch leaders open cases directly, reassign them, and keep the hardship register.
LEADERS = BRANCH_LEADERS

# The dialogs, each with its steps in the order people meet them.
REPORT = Steps("care_report", who="关于谁（数字）", name="党员姓名", villager="村民姓名", occasion="什么情况（数字）",
               details="简单说几句", media="照片或语音（可跳过）", confirm="回复 1 上报")
VISIT = Steps("care_visit", pick="哪一件（数字）", subject="看望谁（姓名）", occasion="什么情况（数字）",
              when="哪天去的", visitors="谁去的", notes="说了什么", given="送了什么（可跳过）",
              amount="金额（可跳过）", fund="经费来源（可跳过）", photos="之后发的照片（附到这次走访）")
REASSIGN = Steps("care_reassign", pick="改派哪一件（数字）", name="改派给谁（姓名）")
