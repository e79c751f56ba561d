"""The care feature's periodic work: festival campaigns, overdue reminders and escalations, the daily list.

One sweep every 15 minutes does all of it. Each step is idempotent (a campaign's cases are unique per
member, a case is reminded and escalated once, a day's list has one key per secretary and day), so a run
that was missed, or ran twice, or ran in two processes, changes nothing: the next run catches up. The
daily list waits until care_digest_time, local.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from bot.dispatch import JobContext
from handlers.care import service
from handlers.care.common import router
from handlers.care.festivals import campaigns_opening
from storage.models import Organization, OrgType


@router.job("sweep", minutes=15, description="节日走访开单、逾期提醒一次、再过一天报乡镇、每天一份走访清单")
async def sweep(job: JobContext) -> dict[str, int]:
    now = job.clock.now()
    settings = job.settings
    done = {"campaign_cases": 0, "reminded": 0, "escalated": 0, "digests": 0}
    today = now.astimezone(settings.zone).date()
    campaigns = campaigns_opening(settings.care_festivals, today, settings.care_festival_lead_days)
    if campaigns:
        async with job.sessions() as session:
            branch_ids = list((await session.execute(
                select(Organization.id).where(Organization.org_type == OrgType.BRANCH.value)
                .order_by(Organization.id))).scalars())
        # One short transaction per branch and campaign: a county's few hundred branches never hold a long lock.
        for campaign in campaigns:
            for branch_id in branch_ids:
                async with job.sessions() as session, session.begin():
                    branch = await session.get(Organization, branch_id)
                    done["campaign_cases"] += await service.open_campaign(session, branch, campaign, now=now,
                                                                          settings=settings)
    async with job.sessions() as session, session.begin():
        done["reminded"] = await service.remind_overdue(session, now=now, settings=settings)
    async with job.sessions() as session, session.begin():
        done["escalated"] = await service.escalate_overdue(session, now=now, settings=settings)
    if _past(now, settings):
        async with job.sessions() as session, session.begin():
            done["digests"] = await service.send_digests(session, now=now, settings=settings)
    return done


def _past(now: datetime, settings) -> bool:
    hours, minutes = (int(part) for part in settings.care_digest_time.split(":"))
    local = now.astimezone(settings.zone)
    return (local.hour, local.minute) >= (hours, minutes)
