"""Console uploads that wait for "确认导入": a spreadsheet is uploaded, checked and shown row by row before
anything is written, and imported only when the person who read the report confirms it.

The uploaded file waits on the server, in ZHIBU_DATA_DIR/<folder>/<token><suffix>, beside <token>.json naming
the login that uploaded it; "确认导入" posts only the token. Asking for the file again instead would be less
robust for the people using this: a browser cannot fill a file field in by itself, so the 组织员 would have to
find the same file a second time, and could well pick another version of it than the one whose report they
just read. Kept here, the file imported is the file checked. The token is random (unguessable) and tied to the
login: another login, even the same person's, finds nothing under it. Unconfirmed uploads are deleted after
`hours`. Where several machines serve one database, they share ZHIBU_DATA_DIR (or the proxy keeps a browser
on one machine); otherwise a confirmation reaching another machine says the upload has expired, and nothing is
written.

The roster import (handlers/membership/console.py) and the study plan import (handlers/study/console.py) use
this; each checks and writes its own rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.tables import CSV_SUFFIXES, OTHER_SPREADSHEET_SUFFIXES, SAVE_AS, UNKNOWN_TYPE, XLSX_SUFFIXES, TableFileError
from bot.web.console import StaffView, client_address, console_of, size_words
from storage import console as audit_store

TOKEN = re.compile(r"[A-Za-z0-9_-]{20,40}")
# What an import's check of a file gives (a RosterCheck, a PlanCheck): it has `errors`.
Checked = TypeVar("Checked")
# Room in the request for the form around the file.
FORM_ROOM = 64 * 1024


@dataclass
class Upload:
    token: str
    login: int
    member: int
    name: str
    suffix: str
    size: int
    uploaded_at: str
    result: dict | None = None


class Uploads:
    """The uploads of one kind of import: kept in ZHIBU_DATA_DIR/folder, at most `limit` bytes, for `hours`."""

    def __init__(self, folder: str, *, limit: int, hours: int, suffixes: frozenset[str] = CSV_SUFFIXES | XLSX_SUFFIXES):
        self.folder = folder
        self.limit = limit
        self.hours = hours
        self.suffixes = suffixes

    @property
    def max_bytes(self) -> int:
        """What the upload page's staff_page(max_bytes=…) takes: the file and the form around it."""
        return self.limit + FORM_ROOM

    @property
    def expired(self) -> str:
        return f"这个上传已经过期或已经导入（上传后 {self.hours} 小时内要确认导入）。请重新上传文件。"

    def directory(self, view: StaffView) -> Path:
        return view.settings.data_dir / self.folder

    def data_file(self, view: StaffView, upload: Upload) -> Path:
        return self.directory(view) / f"{upload.token}{upload.suffix}"

    def _meta_file(self, view: StaffView, token: str) -> Path:
        return self.directory(view) / f"{token}.json"

    def file_problem(self, file_name: str, size: int) -> str | None:
        suffix = Path(file_name).suffix.lower()
        if suffix in OTHER_SPREADSHEET_SUFFIXES:
            return SAVE_AS.format(suffix=suffix)
        if suffix not in self.suffixes:
            return UNKNOWN_TYPE.format(name=suffix or file_name)
        if size > self.limit:
            return f"文件超过了 {size_words(self.limit)}，没有收下。请删掉多余的工作表和图片，或者另存为 .csv 后再上传。"
        if size == 0:
            return "文件是空的。"
        return None

    async def receive(self, view: StaffView, *, missing: str) -> tuple[Upload | None, str, int]:
        """The file posted in the field "file", kept to be checked: (the upload, "", 200), or (None, the problem
        in words, the status to answer with). missing: what to say when no file was chosen."""
        field = view.posted.get("file") if view.posted is not None else None
        if not isinstance(field, web.FileField) or not field.filename:
            return None, missing, 400
        # The name as the browser gives it (old browsers send the whole path), kept as written for the report.
        name = re.split(r"[\\/]", field.filename)[-1][:100]
        size = field.file.seek(0, os.SEEK_END)
        problem = self.file_problem(name, size)
        if problem:
            return None, problem, 413 if size > self.limit else 400
        upload = Upload(token=secrets.token_urlsafe(24), login=view.login.id, member=view.member.id, name=name,
                        suffix=Path(name).suffix.lower(), size=size, uploaded_at=view.now.isoformat())
        await asyncio.to_thread(self._store, self.directory(view), upload, field.file)
        return upload, "", 200

    async def accept(self, view: StaffView, *, missing: str, form: Callable[..., web.Response]) -> web.Response:
        """The upload form's POST: the file kept and the browser sent to its report (the page's address with
        ?file=<token>), or form(problem=…, status=…) saying what is wrong with it."""
        upload, problem, status = await self.receive(view, missing=missing)
        if upload is None:
            return form(problem=problem, status=status)
        return view.back(f"{view.request.path}?{urlencode({'file': upload.token})}")

    async def page(self, view: StaffView, *, form: Callable[..., web.Response],
                   preview: Callable[[Upload], Awaitable[web.Response]],
                   done: Callable[[Upload], web.Response]) -> web.Response:
        """The import page's GET: an import's result (?done=<token>), an upload's report (?file=<token>) or the
        upload form; an upload that is not there (expired, imported, another login's) gets the form saying so."""
        query = view.request.query
        if "done" in query:
            upload = self.load(view, query["done"], done=True)
            return done(upload) if upload is not None else form(problem=self.expired)
        if "file" in query:
            upload = self.load(view, query["file"])
            return await preview(upload) if upload is not None else form(problem=self.expired)
        return form()

    async def confirm(self, view: StaffView, *, form: Callable[..., web.Response],
                      check: Callable[[Upload, Path], Awaitable[Checked]], fingerprint: Callable[[Checked], str],
                      write: Callable[[Upload, Checked, Path], Awaitable[web.Response]],
                      changed: Callable[[Upload, Checked], web.Response]) -> web.Response:
        """The report's "确认导入" (fields file, plan and, for the good rows only, rows=valid): the upload checked
        again, and written only if the check still comes out as the report showed it (its fingerprint) and has
        no problems, or the person asked for the good rows; otherwise changed() shows the new report. check
        raises TableFileError for a file that cannot be read; its result has `errors`."""
        upload = self.load(view, view.form.get("file"))
        if upload is None:
            return form(problem=self.expired, status=404)
        with self.taken(view, upload) as taken:
            if taken is None:
                return form(problem=self.expired, status=404)
            try:
                checked = await check(upload, taken)
            except TableFileError as error:
                return form(problem=str(error), status=400)
            if fingerprint(checked) == view.form.get("plan") and \
                    (not checked.errors or view.form.get("rows") == "valid"):
                return await write(upload, checked, taken)
        return changed(upload, checked)

    def _forget_old(self, folder: Path) -> None:
        """Delete uploads older than `hours` (blocking: the disk)."""
        cutoff = time.time() - self.hours * 3600
        for path in folder.iterdir() if folder.is_dir() else ():
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()

    def _store(self, folder: Path, upload: Upload, source) -> None:
        """Write the file and its note, readable by this service's user only (blocking: the disk)."""
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._forget_old(folder)
        source.seek(0)
        with os.fdopen(os.open(folder / f"{upload.token}{upload.suffix}", os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                               0o600), "wb") as handle:
            while chunk := source.read(1024 * 1024):
                handle.write(chunk)
        _write_meta(folder / f"{upload.token}.json", upload)

    def load(self, view: StaffView, token: str | None, *, done: bool = False) -> Upload | None:
        """The upload this login made under token, waiting to be confirmed (done: imported, with its result);
        None when there is none (never made, another login's, expired, imported or not yet)."""
        if not token or not TOKEN.fullmatch(token):
            return None
        try:
            upload = Upload(**json.loads(self._meta_file(view, token).read_text(encoding="utf-8")))
            uploaded_at = datetime.fromisoformat(upload.uploaded_at)
        except (OSError, ValueError, TypeError):
            return None
        if upload.token != token or upload.login != view.login.id or upload.member != view.member.id:
            return None
        if done:
            return upload if upload.result is not None else None
        if upload.result is not None or view.now - uploaded_at > timedelta(hours=self.hours):
            return None
        return upload if self.data_file(view, upload).is_file() else None

    @contextlib.contextmanager
    def taken(self, view: StaffView, upload: Upload):
        """The upload's file, taken by renaming for one confirmation: of two (a double click) one gets its path,
        the other None. Anything but a finished import (self.finish) leaves the upload waiting, to be
        confirmed again."""
        waiting = self.data_file(view, upload)
        taken = self.directory(view) / f"{upload.token}-importing{upload.suffix}"
        try:
            waiting.rename(taken)
        except OSError:
            yield None
            return
        try:
            yield taken
        finally:
            if taken.exists():
                taken.rename(waiting)

    async def finish(self, view: StaffView, upload: Upload, taken: Path, result: dict) -> None:
        """Forget the file (the database has what it said); keep the note with the result for the result page."""
        upload.result = result

        def forget() -> None:
            _write_meta(self._meta_file(view, upload.token), upload)
            with contextlib.suppress(OSError):
                taken.unlink()

        await asyncio.to_thread(forget)


def _write_meta(path: Path, upload: Upload) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        json.dump(asdict(upload), handle, ensure_ascii=False)


async def leave_page_transaction(view: StaffView) -> async_sessionmaker[AsyncSession]:
    """End the page's transaction (it has only read, and noted the login as seen) and give the session factory
    for transactions of the page's own. Reading a large file takes seconds and writing a county's roster
    longer; in the page's transaction, SQLite's one write lock would be held all that time and members' messages
    would wait. Afterwards the page must not use view.session (nor view.audit: see audit_apart)."""
    if view.session.in_transaction():
        await view.session.commit()
    return console_of(view.request).sessions


async def audit_apart(view: StaffView, action: str, detail: str) -> None:
    """view.audit, in a short transaction of its own (after leave_page_transaction)."""
    async with console_of(view.request).sessions() as session, session.begin():
        await audit_store.audit(session, view.member, action, detail, now=view.now,
                                client=client_address(view.request))
