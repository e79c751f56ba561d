"""The study feature's start-up and periodic work.

At start-up the content/study files are read (a broken file stops the start, as `zhibu content check` would
report it) and kept in step with the StudyItem rows by key. A sweep every 15 minutes sends the weekly push
(from the configured weekday and local time) and the one chaser; the outbox keys keep each to once per item
and member, so a run that was missed, ran twice or ran in two processes changes nothing.
"""

from __future__ import annotations

from bot.dispatch import JobContext, Runtime
from content.loader import DEFAULT_ROOT, ContentError
from content.study_items import doc_titles, load_study_items
from handlers.study import service
from handlers.study.common import router


@router.lifespan
async def load_items(runtime: Runtime):
    entries, problems = load_study_items(DEFAULT_ROOT, runtime.settings.study_dir)
    if problems:
        raise ContentError(problems, DEFAULT_ROOT)
    async with runtime.sessions() as session, session.begin():
        await service.sync_items(session, entries, runtime.clock.now())
    runtime.provide("study_doc_titles", doc_titles(DEFAULT_ROOT))
    yield


@router.job("sweep", minutes=15, description="每周学习内容推送一次；期末前催学一次（只发给还没学的）")
async def sweep(job: JobContext) -> dict[str, int]:
    now = job.clock.now()
    done = {}
    async with job.sessions() as session, session.begin():
        done["pushed"] = await service.push_weekly(session, now=now, settings=job.settings)
    async with job.sessions() as session, session.begin():
        done["chased"] = await service.chase(session, now=now, settings=job.settings)
    return done
