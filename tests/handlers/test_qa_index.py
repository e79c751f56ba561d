"""The Q&A index in the service's lifespan (handlers/qa.py content_index): read from ZHIBU_CACHE_DIR when it
is current, built otherwise, loaded before the server answers anything."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import content.search
from content import index_cache
from content.loader import DEFAULT_ROOT
from harness import SQLITE_ONLY
from sample_content import FAQ


@pytest.fixture
def content_dir(tmp_path) -> Path:
    root = tmp_path / "content"
    (root / "faq").mkdir(parents=True)
    shutil.copy(DEFAULT_ROOT / "sources.toml", root / "sources.toml")
    (root / "faq" / "sample.toml").write_text(FAQ, encoding="utf-8")
    return root


@SQLITE_ONLY
async def test_a_restarted_service_reads_its_index_from_the_cache_dir(make_service, content_dir, tmp_path,
                                                                    monkeypatch):
    cache = tmp_path / "cache"
    # Each start as in a new process: no holder loaded yet.
    monkeypatch.setattr(content.search, "_HOLDERS", {})
    first = await make_service(content_dir=content_dir, cache_dir=cache)
    built = content.search.holder_for(content_dir)
    assert built.builds == 1 and index_cache.cache_file(cache, content_dir.resolve()).is_file()
    assert (await first.say("u1", "农村党员党费交多少")).startswith("农民党员每月交纳党费")

    monkeypatch.setattr(content.search, "_HOLDERS", {})
    second = await make_service(content_dir=content_dir, cache_dir=cache)
    assert content.search.holder_for(content_dir).builds == 0
    assert (await second.say("u2", "五必访指什么")).startswith("重大节日、生病住院")


def test_the_cache_sits_in_the_data_folder_unless_set():
    from bot.config import Settings

    settings = Settings(_env_file=None, data_dir=Path("/srv/zhibu"), cache_dir=None)
    assert settings.effective_cache_dir == Path("/srv/zhibu/cache")
    assert Settings(_env_file=None, cache_dir=Path("/var/cache/zhibu")).effective_cache_dir == Path("/var/cache/zhibu")
