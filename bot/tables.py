"""Reading a spreadsheet a person sent us: the first sheet of a CSV or XLSX file, as rows of cells.

Files come from Excel or WPS on township computers, so the reader accepts what those programs write:
CSV in UTF-8 (with or without a BOM) or in the Chinese Windows code page, Excel's "Unicode text"
(UTF-16, tab-separated), and .xlsx workbooks. Every row keeps the number Excel shows for it, so that
a feature checking the rows can say "第 7 行" and be found at once. What the rows mean, which columns
they need and how their values are checked is left to the feature (the roster import, for one).

Failures to read a file at all are TableFileError, whose message is a sentence for the user.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

log = logging.getLogger(__name__)

# A cell as it comes out of the file: text from a CSV; from an XLSX whatever type Excel stored.
Cell = str | int | float | bool | date | datetime | None
# One row of a sheet: the row number Excel shows for it (from 1), and its cells from column A on.
Row = tuple[int, list[Cell]]

CSV_SUFFIXES = frozenset({".csv", ".txt"})
XLSX_SUFFIXES = frozenset({".xlsx", ".xlsm"})
# Spreadsheet formats we do not read, but whose users only need to be told to save the file again.
OTHER_SPREADSHEET_SUFFIXES = frozenset({".xls", ".et", ".wps", ".ods", ".numbers"})

NOT_FOUND = "找不到文件：{path}"
SAVE_AS = "不支持 {suffix} 格式。请在 Excel 或 WPS 里“另存为” .xlsx 或 .csv 后再导入。"
UNKNOWN_TYPE = "不认识的文件类型“{name}”。请用 .xlsx 或 .csv 文件。"
UNREADABLE_TEXT = "读不出文件里的文字（编码不对）。请在 Excel 里另存为“CSV UTF-8”或 .xlsx。"
UNREADABLE_XLSX = "打不开这个 Excel 文件。请确认它是 .xlsx 格式，并且没有加密码。"


class TableFileError(ValueError):
    """The file cannot be read as a table at all. The message says why, in Chinese, for the user."""


@dataclass(frozen=True)
class RowError:
    """Something wrong in one row of a table, to be shown to whoever fixes the file."""

    # The row number Excel shows.
    row: int
    # The header of the column at fault; None when the row (or the file) as a whole is at fault.
    column: str | None
    message: str

    def describe(self) -> str:
        place = f"第 {self.row} 行"
        if self.column:
            place += f" {self.column}"
        return f"{place}：{self.message}"


def import_report(*, rows: int, imported: bool, kept: int, counts: str, nothing: str, errors: list[RowError],
                  warnings: list[str]) -> str:
    """What an import of a table tells the person who ran it: nothing imported (nothing: "没有导入任何党员。…")
    and every problem; or the good rows imported (kept of them, counts: what became of them) and the rows left
    out; or all of it imported. Then the warnings."""
    if not imported:
        lines = [f"发现 {len(errors)} 处问题，{nothing}"]
    elif errors:
        lines = [f"已导入没有问题的 {kept} 行（{counts}）。", f"下面 {len(errors)} 处问题所在的行没有导入："]
    else:
        lines = [f"导入完成：共 {rows} 行，{counts}。"]
    lines += [error.describe() for error in errors]
    lines += [f"提示：{warning}" for warning in warnings]
    return "\n".join(lines)


def read_table(path: Path) -> list[Row]:
    """The rows of the file's first sheet, each with its Excel row number. Reads the disk: blocking.

    Raises TableFileError for a missing file, a format we do not read, or a file that is not what its
    name says.
    """
    path = Path(path)
    if not path.is_file():
        raise TableFileError(NOT_FOUND.format(path=path))
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return _csv_rows(path)
    if suffix in XLSX_SUFFIXES:
        return _xlsx_rows(path)
    if suffix in OTHER_SPREADSHEET_SUFFIXES:
        raise TableFileError(SAVE_AS.format(suffix=suffix))
    raise TableFileError(UNKNOWN_TYPE.format(name=path.suffix or path.name))


def decode_text(raw: bytes) -> str:
    """The text of a CSV file, in whichever encoding Excel or WPS saved it."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text" (文本文件(制表符分隔)) is UTF-16 behind a byte order mark.
        return raw.decode("utf-16")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]  # "CSV UTF-8" from Excel starts with one
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        # A plain "CSV" from Excel on Chinese Windows is in the GBK code page, which GB18030 contains.
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        raise TableFileError(UNREADABLE_TEXT) from None


def _csv_rows(path: Path) -> list[Row]:
    text = decode_text(path.read_bytes())
    # Tab-separated when the first line with anything on it has tabs and no commas (Excel's "Unicode text").
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = "\t" if "\t" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    # One record is one Excel row even when a quoted cell holds line breaks, so count records, not lines.
    return [(number, list(cells)) for number, cells in enumerate(reader, start=1)]


def _xlsx_rows(path: Path) -> list[Row]:
    import openpyxl  # only files that need it pay for the import
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        # A CSV renamed to .xlsx, an old .xls renamed, a password-protected workbook…
        log.info("%s does not open as an xlsx workbook: %r", path, error)
        raise TableFileError(UNREADABLE_XLSX) from None
    try:
        if not workbook.worksheets:
            return []
        sheet = workbook.worksheets[0]
        # Read-only mode trusts the size the file declares, and some programs declare it too small.
        sheet.reset_dimensions()
        return [(number, list(cells)) for number, cells in enumerate(sheet.iter_rows(values_only=True), start=1)]
    finally:
        workbook.close()


def cell_text(value: Cell) -> str:
    """A cell as the text a person sees in it: full-width letters and digits folded to half-width, trimmed;
    a whole number stored as a float without its ".0", a date-time as its date, a boolean as 是 or 否."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime):
        value = value.date()
    return unicodedata.normalize("NFKC", str(value)).strip()


def normalize_header(value: Cell) -> str:
    """A header cell as the column's name: "姓  名" and "*姓名" (a form's padding, its mark for a required
    column) are both 姓名."""
    return "".join(cell_text(value).split()).strip("*＊")


# ---------------------------------------------------------------- writing tables people open in Excel

# A cell starting with one of these is run as a formula by spreadsheet programs (OWASP's CSV-injection list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def keep_text(cells) -> None:
    """Keep openpyxl text cells text. openpyxl stores a str starting with "=" as a formula; data type "s"
    makes it a plain string with the same characters. quotePrefix is Excel's own "this is text" flag (the
    apostrophe shown only in the formula bar, not part of the value): editing the cell later does not turn
    it into a formula either."""
    for cell in cells:
        if isinstance(cell.value, str):
            cell.data_type = "s"
            if cell.value.startswith(FORMULA_STARTS):
                cell.quotePrefix = True


def csv_safe(value):
    """A CSV cell a spreadsheet program would run as a formula, with OWASP's leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def file_part(text: str) -> str:
    """text made safe inside a file name (Windows' forbidden characters and spaces become "_")."""
    return re.sub(r'[\\/:*?"<>|\s]+', "_", text)
