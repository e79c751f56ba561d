"""Reading the tables people send (bot.tables): the files Excel and WPS save, with Excel's row numbers."""

from __future__ import annotations

import codecs
from datetime import date, datetime

import openpyxl
import pytest

from bot.tables import RowError, TableFileError, cell_text, normalize_header, read_table

HEADER = ["姓名", "所属组织", "备注"]
ROWS = [["王秀英", "红旗村党支部", "流动党员"], ["李建国", "红旗村党支部", ""]]


def csv_text(rows: list[list[str]], delimiter: str = ",") -> str:
    return "".join(delimiter.join(row) + "\r\n" for row in rows)


def test_a_csv_utf8_file_from_excel_reads_without_its_bom(tmp_path):
    # Excel's "CSV UTF-8" starts with a byte order mark, which must not end up in the first header.
    path = tmp_path / "名单.csv"
    path.write_bytes(codecs.BOM_UTF8 + csv_text([HEADER, *ROWS]).encode("utf-8"))

    assert read_table(path) == [(1, HEADER), (2, ROWS[0]), (3, ROWS[1])]


def test_a_plain_csv_from_chinese_windows_reads_as_gb18030(tmp_path):
    # "CSV (逗号分隔)" on Chinese Windows is saved in the GBK code page; 镕 and 堃 are names people have.
    rows = [HEADER, ["朱镕基", "红旗村党支部", ""], ["王堃", "东风村党支部", "困难党员"]]
    path = tmp_path / "名单.csv"
    path.write_bytes(csv_text(rows).encode("gb18030"))

    assert read_table(path) == list(enumerate(rows, start=1))


def test_excel_unicode_text_is_utf16_and_tab_separated(tmp_path):
    # "Unicode 文本" from Excel: UTF-16 with a byte order mark, tabs between cells; commas stay in cells.
    rows = [HEADER, ["王秀英", "红旗村党支部", "2024年迁入，现住县城"]]
    path = tmp_path / "名单.txt"
    path.write_bytes(csv_text(rows, "\t").encode("utf-16"))

    assert read_table(path) == [(1, HEADER), (2, rows[1])]


def test_a_cell_with_line_breaks_is_one_row_as_in_excel(tmp_path):
    # Alt+Enter in a cell: the CSV quotes it over two lines, yet Excel shows it as row 2, and the next as 3.
    path = tmp_path / "名单.csv"
    path.write_text('姓名,备注\n王秀英,"第一行\n第二行"\n李建国,\n', encoding="utf-8")

    assert read_table(path) == [(1, ["姓名", "备注"]), (2, ["王秀英", "第一行\n第二行"]), (3, ["李建国", ""])]


def test_an_xlsx_gives_its_first_sheet_with_excel_row_numbers(tmp_path):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet["A1"] = "红旗村党员花名册"  # a title above the header, then a blank row
    sheet.append([])
    sheet.append(["姓名", "出生日期", "序号"])
    sheet.append(["王秀英", date(1949, 10, 3), 1])
    sheet.append([])
    sheet.append(["李建国", None, 2])
    workbook.create_sheet("说明")["A1"] = "不是名单"
    path = tmp_path / "名单.xlsx"
    workbook.save(path)

    rows = read_table(path)

    assert [number for number, _ in rows] == [1, 2, 3, 4, 5, 6]
    by_number = dict(rows)
    assert by_number[1] == ["红旗村党员花名册"]
    assert by_number[3] == ["姓名", "出生日期", "序号"]
    assert by_number[4] == ["王秀英", datetime(1949, 10, 3), 1]
    assert by_number[6] == ["李建国", None, 2]
    assert not any(cell_text(cell) for cell in by_number[2] + by_number[5])
    assert all("不是名单" not in cells for _, cells in rows)


def test_a_file_named_xlsx_that_is_not_one_is_refused_clearly(tmp_path):
    # A CSV renamed to .xlsx (or an old .xls renamed): the user is told what to check, not given a traceback.
    path = tmp_path / "名单.xlsx"
    path.write_text("姓名,所属组织\n王秀英,红旗村党支部\n", encoding="utf-8")

    with pytest.raises(TableFileError, match="打不开这个 Excel 文件。请确认它是 .xlsx 格式，并且没有加密码。"):
        read_table(path)


def test_text_in_no_encoding_we_know_is_refused_clearly(tmp_path):
    path = tmp_path / "名单.csv"
    path.write_bytes("姓名,所属组织\n".encode("utf-8") + b"\x80\xff\x80\xff\n")

    with pytest.raises(TableFileError, match="读不出文件里的文字（编码不对）。请在 Excel 里另存为“CSV UTF-8”或 .xlsx。"):
        read_table(path)


@pytest.mark.parametrize("name, message", [
    ("名单.xls", "不支持 .xls 格式。请在 Excel 或 WPS 里“另存为” .xlsx 或 .csv 后再导入。"),
    ("名单.docx", "不认识的文件类型“.docx”。请用 .xlsx 或 .csv 文件。"),
])
def test_files_of_other_kinds_are_refused_with_what_to_do(tmp_path, name, message):
    path = tmp_path / name
    path.write_bytes(b"\xd0\xcf\x11\xe0 not a table")

    with pytest.raises(TableFileError) as raised:
        read_table(path)
    assert str(raised.value) == message


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(TableFileError, match="找不到文件"):
        read_table(tmp_path / "没有.csv")


def test_cells_read_as_people_see_them():
    assert cell_text(None) == ""
    assert cell_text("  １３８０００００００１ ") == "13800000001"  # full-width digits typed in a Chinese IME
    assert cell_text(13800000001.0) == "13800000001"  # a number Excel stored as a float
    assert cell_text(2.5) == "2.5"
    assert cell_text(True) == "是" and cell_text(False) == "否"
    assert cell_text(datetime(1949, 10, 3)) == "1949-10-03"


def test_headers_lose_their_padding_and_required_marks():
    assert normalize_header("姓  名") == "姓名"
    assert normalize_header("*所属组织") == "所属组织"
    assert normalize_header("＊手机号 ") == "手机号"
    assert normalize_header(None) == ""


def test_a_row_error_says_where_as_excel_numbers_it():
    assert RowError(7, "手机号", "“1380000”不是 11 位手机号").describe() == "第 7 行 手机号：“1380000”不是 11 位手机号"
    assert RowError(1, None, "文件是空的").describe() == "第 1 行：文件是空的"
