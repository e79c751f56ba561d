"""Console downloads: a list exactly as the page's filters show it, as XLSX or CSV that Excel opens, no cell
of which runs as a formula, each download written to the audit log."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web

from bot.tables import csv_safe, file_part, keep_text
from bot.web.console import StaffView

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# The most rows one download holds. A list with more is refused with a page saying so, never cut short: a
# township's officer reading a file of the first 50,000 check-ins would take it for all of them.
EXPORT_MAX = 50_000
log = logging.getLogger(__name__)


def attachment(body: bytes, file_name: str, content_type: str, charset: str | None = None) -> web.Response:
    """A download named file_name (Chinese allowed: RFC 5987's filename*, with an ASCII fallback)."""
    fallback = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in file_name)
    disposition = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"
    return web.Response(body=body, content_type=content_type, charset=charset, headers={
        "Content-Disposition": disposition, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def table_xlsx(title: str, header: list[str], rows: list[list]) -> bytes:
    """One worksheet: a title line, a header, the rows; every text cell stays text."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "列表"
    for values in ([title], [], header, *rows):
        sheet.append(values)
        keep_text(sheet[sheet.max_row])
    sheet["A1"].font = Font(size=14, bold=True)
    for cell in sheet[3]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A4"
    for index in range(1, len(header) + 1):
        sheet.column_dimensions[get_column_letter(index)].width = 16
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def table_csv(header: list[str], rows: list[list]) -> bytes:
    """UTF-8 with a byte-order mark (Excel on Chinese Windows reads it right only so)."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_safe(value) for value in row])
    return text.getvalue().encode("utf-8-sig")


async def send_table(view: StaffView, what: str, extension: str, title: str, header: list[str],
                     rows: list[list], filters_text: str) -> web.Response:
    """The download of a console list (what: "签到记录"…; extension: "csv" or "xlsx"), audited."""
    stamp = view.local(view.now).date().isoformat()
    name = file_part(f"{what}-{view.scope.name}-{stamp}") + "." + extension
    await view.audit("export", f"导出{what}（{extension}，{len(rows)} 行）：{filters_text}")
    if extension == "csv":
        return attachment(table_csv(header, rows), name, "text/csv", "utf-8")
    body = await asyncio.to_thread(table_xlsx, f"{title}（{filters_text}）", header, rows)
    return attachment(body, name, XLSX)


def refusal(view: StaffView, what: str, total: int) -> web.Response | None:
    """None when total rows fit in one download; else the page saying how many there are and how to make them
    fit (EXPORT_MAX), logged."""
    if total <= EXPORT_MAX:
        return None
    log.info("export of %s refused: %d rows, more than %d (%s)", what, total, EXPORT_MAX, view.request.path_qs)
    text = (f"按现在的筛选条件，{what}共有 {total:,} 行，一次最多导出 {EXPORT_MAX:,} 行。"
            "请按乡镇、支部或日期把范围缩小，分几次导出。")
    response = aiohttp_jinja2.render_template("console_error.html", view.request,
                                              {"title": "要导出的行太多", "text": text}, status=422)
    response.headers["Cache-Control"] = "no-store"
    return response
