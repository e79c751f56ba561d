"""The console's overview page over HTTP while its figures are kept (handlers/meetings/overview_cache.py)
and its rows' HTML too (handlers/meetings/console.py): a check-in made after a page was shown is on the next
page. The county and the sign-in are test_console_pages's; today is 2026-11-24.
"""

from __future__ import annotations

from sqlalchemy import select

from storage.models import Meeting, Member
from test_console_auth import browsers as browsers_fixture
from test_console_pages import cells, county_service, row_of, signed_in_browser
from test_console_data import sign  # noqa: E402  (its folder is on the path once test_console_pages is imported)

browsers = browsers_fixture  # the fixture, under the name the tests ask for
Q3 = "/console/overview?period=quarter&day=2026-08-01"


async def test_a_check_in_after_a_page_shows_on_the_next(make_service, browsers):
    service, ids = await county_service(make_service)
    browser = await signed_in_browser(service, browsers, "town-1")
    status, page, _ = await browser.get(Q3)
    assert status == 200 and cells(row_of(page, "红旗村党支部"))[0] == ["缺"]
    status, again, _ = await browser.get(Q3)
    assert status == 200 and row_of(again, "红旗村党支部") == row_of(page, "红旗村党支部")

    # The 支部党员大会 红旗村 called for 28 September, which nobody had signed.
    async with service.sessions() as session, session.begin():
        general = (await session.execute(select(Meeting).where(
            Meeting.org_id == ids["hongqi"], Meeting.kind == "支部党员大会", Meeting.status == "scheduled"))).scalar_one()
        secretary = (await session.execute(select(Member).where(Member.name == "李建国"))).scalar_one()
        await sign(session, general, secretary.id, now=general.starts_at, method="code", late=False)
    status, page, _ = await browser.get(Q3)
    assert status == 200 and cells(row_of(page, "红旗村党支部"))[0] == ["已开", "9月28日"]
    # 东风村's row, unchanged, reads as before.
    assert row_of(page, "东风村党支部") == row_of(again, "东风村党支部")
