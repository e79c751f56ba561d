"""A feature in one package: its chat handlers, typed settings, start-up hook, what it provides, its web
routes, its jobs and its numbered questions, all declared on its Router and collected by the composition
root. The feature here is a small made-up one, served through the real webhook."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from bot.config import Settings
from bot.dialogs import Picked, Steps, offer
from bot.app import CONFIGS, PROVIDED
from bot.dispatch import Dialog, JobContext, Router, Runtime
from bot.scheduler import run_job_now

FRUIT = Steps("fruit", pick="要哪种水果（数字）")


class GreetSettings(Settings):
    greeting_word: str = "你好"


def greeting_feature(events: list[str]) -> Router:
    router = Router("greet", settings=GreetSettings)

    @router.lifespan
    async def counter(runtime: Runtime):
        events.append(f"start:{runtime.settings.greeting_word}")
        runtime.provide("greetings", {"count": 0})
        yield
        events.append("stop")

    @router.text("打招呼")
    async def greet(settings: GreetSettings, greetings: dict) -> str:
        greetings["count"] += 1
        return f"{settings.greeting_word}，第{greetings['count']}次"

    @router.text("水果")
    async def fruit(dialog: Dialog) -> str:
        dialog.start(FRUIT, "pick")
        return offer(dialog, "pick", "要哪种？回复数字：\n{options}", [("apple", "苹果"), ("pear", "梨")])

    @router.on(Picked(), dialog=FRUIT, step="pick")
    async def fruit_picked(dialog: Dialog, picked: str, choice: int) -> str:
        dialog.finish()
        return f"选了 {choice}：{picked}"

    @router.web.get("/greet/count")
    async def count_page(request):
        return web.json_response(request.app[PROVIDED]["greetings"])

    @router.job("word", minutes=5)
    async def word(job: JobContext) -> None:
        events.append(f"job:{job.settings.greeting_word}")

    return router


async def test_a_feature_declares_its_settings_hook_provider_and_page_on_its_router(make_service):
    events: list[str] = []
    service = await make_service(routers=[greeting_feature(events)], greeting_word="您好")
    assert events == ["start:您好"]  # the hook ran before the first message, with the feature's own settings
    assert await service.say("o-1", "打招呼") == "您好，第1次"
    assert await service.say("o-2", "打招呼") == "您好，第2次"
    async with aiohttp.ClientSession() as http, http.get(f"{service.url}/greet/count") as response:
        assert response.status == 200
        assert await response.json() == {"count": 2}


async def test_a_job_gets_its_features_settings(make_service):
    events: list[str] = []
    router = greeting_feature(events)
    service = await make_service(routers=[router], greeting_word="早上好")
    # The scheduler's context carries the core settings; the job is handed its own feature's.
    context = JobContext(sessions=service.sessions, clock=service.clock, settings=service.settings,
                         configs=service.app[CONFIGS])
    await run_job_now("greet.word", jobs=router.jobs, context=context)
    assert events[-1] == "job:早上好"


async def test_a_setting_no_feature_has_stops_the_start(make_service):
    with pytest.raises(ValueError, match="greting_word"):
        await make_service(routers=[greeting_feature([])], greting_word="您好")


async def test_a_bad_feature_setting_stops_the_start(make_service):
    class Strict(Settings):
        retries: int = 3

    router = Router("strict", settings=Strict)
    with pytest.raises(ValueError, match="retries"):
        await make_service(routers=[router], retries="many")


def test_a_dialog_step_it_does_not_declare_is_refused_at_registration():
    router = Router("typo")
    with pytest.raises(ValueError, match="declares no step 'pik'"):
        router.on(Picked(), dialog=FRUIT, step="pik")
    with pytest.raises(ValueError, match="declares no step"):
        Dialog().start(FRUIT, "choose")


async def test_a_numbered_question_asks_again_on_a_number_not_offered(make_service):
    service = await make_service(routers=[greeting_feature([])])
    question = "要哪种？回复数字：\n1 苹果\n2 梨"
    assert await service.say("o-1", "水果") == question
    assert await service.say("o-1", "3") == question  # not on the list: the same question again
    assert await service.say("o-1", "0") == question
    assert await service.say("o-1", "2") == "选了 2：pear"
    assert await service.say("o-1", "水果") == question
    assert await service.say("o-1", "取消") == "已取消。"
    # The options belonged to that question: with it gone, a number is no answer to anything.
    assert "没有听懂" in await service.say("o-1", "1")


async def test_the_dialog_of_a_step_without_options_does_not_keep_the_last_ones():
    dialog = Dialog()
    dialog.start(FRUIT, "pick")
    offer(dialog, "pick", "{options}", [("apple", "苹果")])
    assert "choices" in dialog.data
    dialog.goto("pick", note="x")
    assert "choices" not in dialog.data and dialog.data["note"] == "x"
