"""The loaded Q&A index kept out of the garbage collector's way, and reloads that give their memory back
(content/memory.py)."""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import pytest

from content.search import IndexHolder
from test_index_cache import write_content

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("memory")
    root, cache = write_content(folder / "content"), folder / "cache"
    IndexHolder(root, cache).load()
    return root, cache


def tracked_objects_of(index) -> list:
    """Every object the collector tracks that the index reaches (not classes, functions or modules, which
    belong to the program rather than to this index)."""
    found, seen, todo = [], {id(index)}, [index]
    while todo:
        item = todo.pop()
        found.append(item)
        for referent in gc.get_referents(item):
            if id(referent) in seen or not gc.is_tracked(referent) or isinstance(referent, type) \
                    or type(referent).__name__ in ("module", "function", "builtin_function_or_method", "cell"):
                continue
            seen.add(id(referent))
            todo.append(referent)
    return found


def test_a_loaded_index_is_frozen_out_of_the_collector(built):
    root, cache = built
    holder = IndexHolder(root, cache)
    index = holder.load()
    mine = tracked_objects_of(index)
    assert len(mine) > 50  # sets, lists, dicts (tens of thousands for the shipped content)
    in_generations = {id(item) for item in gc.get_objects()}
    assert not [item for item in mine if id(item) in in_generations]
    assert gc.get_freeze_count() >= len(mine)


def test_an_index_has_no_reference_cycles(built):
    """Freed by reference counting alone the moment the holder and the last search let go: frozen or not,
    and without waiting for a collection."""
    root, cache = built
    holder = IndexHolder(root, cache)
    index = holder.load()
    index.search("农村党员党费交多少")
    gone = weakref.ref(index)
    gc.disable()
    try:
        del holder, index
        assert gone() is None
    finally:
        gc.enable()


RELOADS = 6
SCRIPT = textwrap.dedent("""
    import json, sys, tracemalloc
    from pathlib import Path

    def rss_kb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    tracemalloc.start()
    from content.search import IndexHolder

    holder = IndexHolder(Path(sys.argv[1]), Path(sys.argv[2]))
    before = tracemalloc.get_traced_memory()[0]
    holder.load()
    holder.index.search("农村党员党费交多少")
    first, first_rss = tracemalloc.get_traced_memory()[0], rss_kb()
    for _ in range(int(sys.argv[3])):
        assert holder.reload()
        holder.index.search("农村党员党费交多少")
    print(json.dumps({"index": first - before, "growth": tracemalloc.get_traced_memory()[0] - first,
                      "rss_growth": (rss_kb() - first_rss) * 1024, "builds": holder.builds}))
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_reloads_give_their_memory_back(built, tmp_path):
    """Each reload puts a new index in place; the old one must go (a reference kept, or a cycle frozen out of
    the collector, would keep one more index per reload)."""
    root, cache = built
    mine = tmp_path / "cache"
    shutil.copytree(cache, mine)
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(root), str(mine), str(RELOADS)], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=True)
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["builds"] == 0  # every load read the cache: the test stays fast
    index = found["index"]
    assert index > 5_000_000, found  # jieba's word table alone is some 14 MB
    # Python's own count of what is allocated: after six reloads, less than a third of one index more.
    assert found["growth"] < index / 3, found
    # What the system sees, with room for allocator noise: far less than the six indexes a leak would keep.
    assert found["rss_growth"] < 2 * index, found
