"""The dialog toolkit: a dialog's steps declared in one place, and numbered questions.

A dialog is declared once, with its steps in the order a user meets them and what each one asks:

    CALL = Steps("meeting_call", kind="开什么会（数字）", group="哪个党小组（数字）", time="什么时候", ...)

    @router.on(AnyText(), dialog=CALL, step="time")      # a step CALL does not declare fails at import

A numbered question ("回复数字：1 … 2 …") is asked with `offer`, which keeps the options in the dialog; the
step's handler takes `Picked()` and gets the chosen option's value as `picked`. A number outside the list
never reaches the handler: the dispatcher asks the question again (or what `again` says). 取消 leaves any
dialog, as everywhere.

    @router.on(Picked(), dialog=CALL, step="group")
    async def call_group(dialog, picked): ...

    return offer(dialog, "group", "哪个党小组开会？回复数字：\n{options}", [(g.id, g.name) for g in groups])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bot.dispatch import CHOICES, Choice, Dialog, Filter


class Steps(str):
    """A dialog's name (it is the str the dispatcher stores) together with its declared steps, in order,
    each with a few words on what it asks: the whole dialog readable in one place."""

    steps: dict[str, str]

    def __new__(cls, name: str, /, **steps: str) -> "Steps":
        declared = super().__new__(cls, name)
        declared.steps = dict(steps)
        return declared

    def check(self, step: str | None) -> None:
        if step is not None and step not in self.steps:
            raise ValueError(f"dialog {str(self)!r} declares no step {step!r} (it has {', '.join(self.steps)})")


def numbered(labels: Iterable[str]) -> str:
    """Options as lines "1 …", "2 …"."""
    return "\n".join(f"{number} {label}" for number, label in enumerate(labels, start=1))


def offer(dialog: Dialog, step: str, question: str, options: Sequence[tuple[Any, str]], *,
          again: str | None = None, **data: Any) -> str:
    """Go to step and ask question, whose `{options}` becomes the numbered labels; returns the text to send.

    options: (value, label) pairs; the value (kept in the dialog, so it must be plain JSON: an id, a name)
    is what the step's Picked() handler gets. again: what a number outside the list is answered with
    (`{options}` is filled in too); by default the question itself.
    """
    labels = numbered(label for _, label in options)
    text = question.format(options=labels)
    dialog.goto(step, **data, **{CHOICES: {
        "values": [value for value, _ in options],
        "again": (again.format(options=labels) if again is not None else text),
    }})
    return text


class Picked(Filter):
    """A number choosing one of the options `offer` put in this step: `picked` (the option's value) and
    `choice` (its number). Other numbers do not match; the dispatcher asks again."""

    _number = Choice()

    def __call__(self, message, ctx):
        offered = ctx.dialog.data.get(CHOICES)
        found = self._number(message, ctx)
        if not offered or not found or not 1 <= found["choice"] <= len(offered["values"]):
            return None
        return {"picked": offered["values"][found["choice"] - 1], "choice": found["choice"]}
