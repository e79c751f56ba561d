"""Multi-step dialog state, one row per user, with an expiry (read with the sender in identities.touch)."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import DialogState


async def save(session: AsyncSession, openid: str, *, name: str, step: str, data: dict,
               expires_at: datetime) -> None:
    row = await session.get(DialogState, openid)
    if row is None:
        row = DialogState(openid=openid, name=name, step=step, expires_at=expires_at)
        session.add(row)
    row.name, row.step, row.expires_at = name, step, expires_at
    row.data = json.dumps(data, ensure_ascii=False, default=str)


async def clear(session: AsyncSession, openid: str) -> None:
    await session.execute(delete(DialogState).where(DialogState.openid == openid))
