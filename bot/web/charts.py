"""Charts for the staff console, drawn on the server as SVG text.

No library, no script, nothing fetched from elsewhere: a chart is a string a template inserts as it is
(Jinja2: `{{ svg | safe }}`; every piece of text in it is escaped here). The pages' CSP allows no inline
styles, so the drawing uses presentation attributes (fill, stroke, font-size), never `style`.

Each chart is an image with a name and a description a screen reader reads (`role="img"`, `<title>`,
`<desc>` listing every value), every bar says its value in text, and each bar carries its own `<title>`
(the tooltip). Labels may hold a line break ("11月\\n2026年"): each line becomes a line of text.

Bars come in the order given (months, quarters: time); nothing is ranked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

WIDTH = 640
HEIGHT = 300
LEFT = 56  # room for the value axis' labels
RIGHT = 16
TOP = 72  # the heading and the legend
BOTTOM = 60  # two lines of labels under the bars
FONT = "PingFang SC, Noto Sans CJK SC, Source Han Sans SC, Microsoft YaHei, sans-serif"
INK = "#1a1a1a"
MUTED = "#555555"
GRID = "#d0d0d0"
RED = "#9b1c1c"  # the pages' heading colour
LIGHT = "#d9d9d9"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _id(chart_id: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "", chart_id)
    return cleaned if cleaned[:1].isalpha() else f"chart-{cleaned}"


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:.1f}"


def _text(x: float, y: float, content: str, *, anchor: str = "middle", size: int = 13, fill: str = INK,
          bold: bool = False, line_height: int = 15) -> str:
    """A text element; each line of content (split at "\\n") is a tspan below the previous one."""
    lines = content.split("\n")
    weight = ' font-weight="bold"' if bold else ""
    spans = "".join(f'<tspan x="{x:.1f}" dy="{0 if index == 0 else line_height}">{_e(line)}</tspan>'
                    for index, line in enumerate(lines))
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{fill}"{weight}>'
            f'{spans}</text>')


def _frame(chart_id: str, title: str, description: str, body: list[str]) -> str:
    ident = _id(chart_id)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
            f'role="img" aria-labelledby="{ident}-title {ident}-desc" font-family="{_e(FONT)}">'
            f'<title id="{ident}-title">{_e(title)}</title><desc id="{ident}-desc">{_e(description)}</desc>'
            f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>'
            + _text(LEFT, 24, title, anchor="start", size=16, bold=True)
            + "".join(body) + "</svg>")


def _axis(maximum: float, ticks: Sequence[float], unit: str) -> list[str]:
    """Horizontal grid lines with their values at the left, and the baseline."""
    bottom, height = HEIGHT - BOTTOM, HEIGHT - BOTTOM - TOP
    parts = []
    for tick in ticks:
        y = bottom - height * tick / maximum if maximum else bottom
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="{GRID}" '
                     f'stroke-width="1"/>')
        parts.append(_text(LEFT - 6, y + 4, f"{_number(tick)}{unit}", anchor="end", size=12, fill=MUTED))
    parts.append(f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="{INK}" stroke-width="1"/>')
    return parts


def _slots(count: int) -> tuple[float, float]:
    """The width of each bar's slot and of the bar itself."""
    slot = (WIDTH - LEFT - RIGHT) / max(count, 1)
    return slot, min(slot * 0.6, 56)


def _one_line(label: str) -> str:
    return " ".join(label.split("\n"))


def attendance_chart(points: Sequence[tuple[str, float | None]], *, title: str = "每月出勤率",
                     chart_id: str = "attendance", empty: str = "无会议") -> str:
    """Bars of attendance in percent (0–100), one per (label, percent); None: no meeting was held then
    (no bar, the word `empty` instead of a value)."""
    bottom, height = HEIGHT - BOTTOM, HEIGHT - BOTTOM - TOP
    body = _axis(100, (0, 25, 50, 75, 100), "%")
    slot, bar = _slots(len(points))
    described = []
    for index, (label, percent) in enumerate(points):
        centre = LEFT + slot * (index + 0.5)
        body.append(_text(centre, bottom + 18, label, size=12))
        if percent is None:
            described.append(f"{_one_line(label)} {empty}")
            body.append(_text(centre, bottom - 6, empty, size=11, fill=MUTED))
            continue
        value = max(0.0, min(100.0, float(percent)))
        shown = f"{value:.0f}%"  # whole percents: a tenth of a percent is noise on a chart
        described.append(f"{_one_line(label)} {shown}")
        top = bottom - height * value / 100
        body.append(f'<g><title>{_e(_one_line(label))}：出勤率 {_e(shown)}</title>'
                    f'<rect x="{centre - bar / 2:.1f}" y="{top:.1f}" width="{bar:.1f}" height="{bottom - top:.1f}" '
                    f'fill="{RED}"/></g>')
        body.append(_text(centre, top - 5, shown, size=12, bold=True))
    description = "实到人数占应到人数的比例：" + ("；".join(described) if described else "没有数据") + "。"
    return _frame(chart_id, title, description, body)


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^k at or above value (at least 1): a round top for the axis."""
    if value <= 1:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def held_chart(points: Sequence[tuple[str, int, int, int]], *, title: str = "每季度规定会议开会情况",
               chart_id: str = "required") -> str:
    """Stacked bars, one per (label, held, missing, not_due): held (solid), missing ("缺", outlined), not yet
    due (light), with "held/required" above each bar and a legend that names the three."""
    bottom, height = HEIGHT - BOTTOM, HEIGHT - BOTTOM - TOP
    maximum = _nice_ceiling(max((held + missing + not_due for _, held, missing, not_due in points), default=0))
    body = _axis(maximum, [maximum * step / 4 for step in range(5)] if maximum >= 4 else [0, maximum], "")
    for offset, (name, fill, stroke) in enumerate((("已开", RED, RED), ("缺", "#ffffff", RED),
                                                    ("未到期", LIGHT, MUTED))):
        x = LEFT + offset * 84
        body.append(f'<rect x="{x}" y="34" width="14" height="14" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>')
        body.append(_text(x + 20, 46, name, anchor="start", size=13))
    slot, bar = _slots(len(points))
    described = []
    for index, (label, held, missing, not_due) in enumerate(points):
        centre = LEFT + slot * (index + 0.5)
        required = held + missing + not_due
        summary = f"已开 {held}，缺 {missing}，未到期 {not_due}，应开 {required}"
        described.append(f"{_one_line(label)}：{summary}")
        body.append(_text(centre, bottom + 18, label, size=12))
        y = float(bottom)
        segments = []
        for amount, fill, stroke in ((held, RED, RED), (missing, "#ffffff", RED), (not_due, LIGHT, MUTED)):
            if amount <= 0 or not maximum:
                continue
            size = height * amount / maximum
            y -= size
            segments.append(f'<rect x="{centre - bar / 2:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{size:.1f}" '
                            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>')
        body.append(f'<g><title>{_e(_one_line(label))}：{_e(summary)}</title>{"".join(segments)}</g>')
        body.append(_text(centre, y - 5, f"{held}/{required}", size=12, bold=True))
    description = "每个季度规定要开的会（已开/应开）：" + ("；".join(described) if described else "没有数据") + "。"
    return _frame(chart_id, title, description, body)
