"""Server-drawn SVG charts (bot/web/charts.py): well-formed, accessible, escaped, self-contained."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from bot.web.charts import HEIGHT, attendance_chart, held_chart

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises if anything is not escaped or not closed


def texts(root: ET.Element) -> list[str]:
    return ["".join(node.itertext()) for node in root.iter(f"{SVG}text")]


def bars(root: ET.Element) -> list[ET.Element]:
    """The data bars: rectangles inside a <g> with its own tooltip."""
    return [rect for group in root.iter(f"{SVG}g") for rect in group.iter(f"{SVG}rect")]


def test_attendance_chart_names_every_month_and_value():
    svg = attendance_chart([("10月", 80.0), ("11月\n2026年", 66.6667), ("12月", None)], title="城关镇 每月出勤率")
    root = parse(svg)
    assert root.get("role") == "img"
    title_id, desc_id = root.get("aria-labelledby").split()
    assert root.find(f"{SVG}title").get("id") == title_id and root.find(f"{SVG}title").text == "城关镇 每月出勤率"
    desc = root.find(f"{SVG}desc")
    assert desc.get("id") == desc_id
    assert desc.text == "实到人数占应到人数的比例：10月 80%；11月 2026年 67%；12月 无会议。"
    shown = texts(root)
    assert "城关镇 每月出勤率" in shown
    assert {"10月", "11月2026年", "12月", "80%", "67%", "无会议"} <= set(shown)
    assert {"0%", "25%", "50%", "75%", "100%"} <= set(shown)
    # Two values, two bars (a month without meetings has none), each with its tooltip.
    assert len(bars(root)) == 2
    assert [group.find(f"{SVG}title").text for group in root.iter(f"{SVG}g")] == ["10月：出勤率 80%",
                                                                                   "11月 2026年：出勤率 67%"]


def test_bar_heights_follow_the_values_and_stay_within_0_to_100():
    root = parse(attendance_chart([("a", 100), ("b", 50), ("c", 130), ("d", -20)]))
    heights = [float(rect.get("height")) for rect in bars(root)]
    assert abs(heights[1] * 2 - heights[0]) < 0.2
    assert heights[2] == heights[0] and heights[3] == 0
    assert {"100%", "50%", "0%"} <= set(texts(root))
    for rect in bars(root):
        assert 0 <= float(rect.get("y")) <= HEIGHT


def test_text_is_escaped_and_nothing_runs_or_loads():
    hostile = '<script>alert("x")</script> & "引号"'
    svg = attendance_chart([(hostile, 50.0)], title=hostile, chart_id='x" onload="alert(1)')
    root = parse(svg)
    assert root.find(f"{SVG}title").text == hostile
    assert hostile in texts(root)
    assert "<script" not in svg and "onload" not in svg.replace("onloadalert1", "")
    assert root.get("aria-labelledby") == "xonloadalert1-title xonloadalert1-desc"
    # No inline style (the pages' CSP forbids it), no script, no link to anywhere.
    assert "style=" not in svg and "href" not in svg
    assert svg.count("http") == 1 and 'xmlns="http://www.w3.org/2000/svg"' in svg
    held = held_chart([(hostile, 1, 1, 1)], title=hostile)
    assert parse(held).find(f"{SVG}title").text == hostile and "<script" not in held


def test_an_empty_chart_is_still_a_picture_that_says_so():
    for svg in (attendance_chart([]), held_chart([])):
        root = parse(svg)
        assert "没有数据" in root.find(f"{SVG}desc").text
        assert bars(root) == []


def test_held_chart_stacks_held_missing_and_not_due():
    root = parse(held_chart([("第3季度\n2026年", 17, 2, 0), ("第4季度\n2026年", 1, 4, 14)]))
    shown = texts(root)
    assert {"已开", "缺", "未到期", "17/19", "1/19", "第3季度2026年", "第4季度2026年"} <= set(shown)
    groups = list(root.iter(f"{SVG}g"))
    assert [group.find(f"{SVG}title").text for group in groups] == [
        "第3季度 2026年：已开 17，缺 2，未到期 0，应开 19", "第4季度 2026年：已开 1，缺 4，未到期 14，应开 19"]
    # Same total, same height; segments in proportion to their counts.
    third = [float(rect.get("height")) for rect in groups[0].iter(f"{SVG}rect")]
    fourth = [float(rect.get("height")) for rect in groups[1].iter(f"{SVG}rect")]
    assert len(third) == 2 and len(fourth) == 3
    assert abs(sum(third) - sum(fourth)) < 0.5
    assert abs(third[0] / third[1] - 17 / 2) < 0.1
    # The axis reaches a round number at or above the tallest bar.
    assert "20" in shown and "0" in shown
