"""The study feature's start-up and periodic work.

At start-up the study files (ZHIBU_CONTENT_DIR's study/, or ZHIBU_STUDY_DIR) are read (a broken file stops the
start, as `zhibu content check` would report it) and kept in step with the StudyItem rows by key; `zhibu content
reload` reads them again (a broken edit keeps what was loaded). A sweep every 15 minutes sends the weekly push
(from the configured weekday and local time), the one chaser and the monthly 送学上门 list to secretaries; the
outbox keys keep each to once per item and member (per month for the list), so a run that was missed, ran twice
or ran in two processes changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from bot.dispatch import JobContext, Runtime
from content.loader import DEFAULT_ROOT, ContentError
from content.study_items import doc_titles, load_study_items
from handlers.study import leaders, service
from handlers.study.common import router

log = logging.getLogger(__name__)


async def _sync(runtime: Runtime, titles: dict[str, str]) -> int:
    """Read the study files and bring the StudyItem rows in step; a broken file raises ContentError."""
    root = Path(runtime.settings.content_dir or DEFAULT_ROOT)
    # Files are read off the event loop: a reload happens while the service answers messages.
    entries, problems = await asyncio.to_thread(load_study_items, root, runtime.settings.study_dir)
    if problems:
        raise ContentError(problems, root)
    async with runtime.sessions() as session, session.begin():
        changed = await service.sync_items(session, entries, runtime.clock.now())
    found = await asyncio.to_thread(doc_titles, root)
    titles.clear()
    titles.update(found)
    return changed


@router.lifespan
async def load_items(runtime: Runtime):
    titles: dict[str, str] = {}
    await _sync(runtime, titles)
    runtime.provide("study_doc_titles", titles)

    async def reload() -> None:
        # A broken edit keeps what was loaded: the operator sees the problems in the log (and in
        # `zhibu content reload`, which checks before it signals).
        try:
            changed = await _sync(runtime, titles)
        except ContentError as error:
            log.error("study items not reloaded, the files have problems:\n%s", error)
            return
        log.info("study items reloaded: %d added or changed", changed)

    runtime.on_reload("study items", reload)
    yield


@router.job("sweep", minutes=15, description="每周学习内容推送一次；期末前催学一次（只发给还没学的）；每月初给书记送学上门名单")
async def sweep(job: JobContext) -> dict[str, int]:
    now = job.clock.now()
    done = {}
    async with job.sessions() as session, session.begin():
        done["pushed"] = await service.push_weekly(session, now=now, settings=job.settings)
    async with job.sessions() as session, session.begin():
        done["chased"] = await service.chase(session, now=now, settings=job.settings)
    async with job.sessions() as session, session.begin():
        done["at_home_lists"] = await leaders.send_at_home_lists(session, now=now, settings=job.settings)
    return done
