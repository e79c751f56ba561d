"""The built Q&A index kept in a file, so that a process starts by reading it rather than building it.

Building the index (content/search.py's QaIndex) takes seconds: jieba's dictionary, the slip check over every
text, BM25, the classifier. Reading a built one back takes a few tenths of a second and imports neither
scikit-learn nor bm25s. The file is named for the content folder and starts with a key: a hash of all the
index is made from, namely every content file's bytes (what load_content reads, and where), the source of the
modules under content/ (they shape it), the Python version and the versions of the libraries whose data
it holds. A file with another key is stale; the index is then built again (content/index_build.py, straight
into a new file) and the file replaced.

The file is a pickle: the service reads only files it wrote itself, into a folder it creates for itself
(ZHIBU_CACHE_DIR, by default ZHIBU_DATA_DIR/cache, made readable and writable by the service's user alone).
Reading a pickle runs code it names, so the folder must not be writable by anyone else; never point it at a
shared or downloaded file. A missing, stale, corrupt or unreadable file costs one build and one log line,
never the start.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

MAGIC = b"zhibu qa-index 1\n"
# Libraries whose objects or data a built index holds: jieba's word table, bm25s's scores, the fitted
# classifier, numpy arrays, pypinyin's readings behind the fixed slips.
LIBRARIES = ("jieba", "bm25s", "scikit-learn", "numpy", "pypinyin")
CODE_DIR = Path(__file__).resolve().parent


def content_files(root: Path) -> list[Path]:
    """The files load_content reads (content/loader.py), in its order."""
    return [root / "sources.toml", *sorted((root / "faq").glob("*.toml")), *sorted((root / "docs").glob("*.md")),
            root / "dictionary.txt", root / "synonyms.toml", root / "scope.tsv"]


def content_key(root: Path) -> str:
    """The hash of everything an index of root is built from. Taken before the content is read for a
    build: a file edited meanwhile then makes the key stale (one needless build), never a wrong index."""
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    add("python", f"{sys.version}|{sys.implementation.cache_tag}".encode())
    for name in LIBRARIES:
        try:
            add(name, metadata.version(name).encode())
        except metadata.PackageNotFoundError:
            add(name, b"missing")
    for path in sorted(CODE_DIR.glob("*.py")):
        add(f"code:{path.name}", path.read_bytes())
    # Entries remember their file (the absolute path), so the folder's place is part of what is built.
    add("root", str(root.resolve()).encode())
    for path in content_files(root):
        try:
            add(f"content:{path.relative_to(root)}", path.read_bytes())
        except FileNotFoundError:
            add(f"absent:{path.relative_to(root)}", b"")
    return digest.hexdigest()


def cache_file(cache_dir: Path, root: Path) -> Path:
    """One file per content folder: a newer build replaces the older one instead of piling up beside it."""
    name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir / f"qa-index-{name}.pickle"


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Held while a process reads the cache and, if it must, builds and writes it: processes starting
    together (`zhibu serve --workers N`) then build once, the others waiting and reading what the first
    wrote. Without a lock (no fcntl, a folder we cannot write) each one just builds for itself."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = open(path.with_suffix(".lock"), "a+b")  # noqa: SIM115 - closed below, which releases the lock
    except OSError:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read(path: Path, key: str):
    """The index stored in path if it was built from what key names; None (and one log line) otherwise."""
    try:
        with open(path, "rb") as file:
            if file.readline() != MAGIC:
                log.warning("Q&A index cache %s is not ours or from another version; building the index", path)
                return None
            stored = file.readline().strip().decode("ascii", "replace")
            if stored != key:
                log.info("Q&A index cache %s is stale (the content or the code changed); building the index", path)
                return None
            index = unpickle(file)
    except FileNotFoundError:
        log.info("no Q&A index cache at %s yet; building the index", path)
        return None
    except OSError as error:
        log.warning("Q&A index cache %s is unreadable (%s); building the index", path, error)
        return None
    except Exception as error:  # noqa: BLE001 - whatever a damaged pickle raises, the answer is to rebuild
        log.warning("Q&A index cache %s is corrupt (%s: %s); building the index", path, type(error).__name__, error)
        return None
    from content.search import QaIndex

    if not isinstance(index, QaIndex):
        log.warning("Q&A index cache %s holds a %s, not an index; building the index", path, type(index).__name__)
        return None
    return index


class _Reads:
    """A file whose reads run a line of Python. pickle.load from a file object of C holds the interpreter
    lock for the whole load (a tenth of a second and more): the event loop's thread, and every member's
    reply, would wait that long. pickle.load calls read() for each 64 kB frame, and a Python call is where a
    thread gives the lock up when another has waited its 5 ms: the loop waits a few milliseconds at most."""

    def __init__(self, file) -> None:
        self._file = file

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def readinto(self, buffer) -> int:
        return self._file.readinto(buffer)

    def readline(self, size: int = -1) -> bytes:
        return self._file.readline(size)


def unpickle(file):
    """pickle.load, giving other threads their turn between frames (_Reads)."""
    return pickle.load(_Reads(file))


@contextlib.contextmanager
def new_entry(path: Path, key: str) -> Iterator[BinaryIO]:
    """A file to write the index for key into (content/index_build.py), to be read back from inside the
    block: a temporary file beside path, headed with the key and renamed over path when the block ends
    without an error, so a reader (another process starting) sees the old file or the new one, never half of
    one. When the folder cannot be written: an anonymous temporary file elsewhere, and one log line; the
    service goes on without a cache."""
    try:
        # Only the service's user may write here: what is read back from this folder is unpickled.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        file = tempfile.NamedTemporaryFile("w+b", dir=path.parent, prefix=".qa-index-", suffix=".tmp",
                                           delete=False)
    except OSError as error:
        _not_written(path, error)
        with tempfile.TemporaryFile("w+b") as file:
            yield file
        return
    temporary: Path | None = Path(file.name)
    try:
        with file:
            file.write(MAGIC + key.encode("ascii") + b"\n")
            yield file
        try:
            # No fsync: a file cut short by a crash fails to unpickle and is simply built again.
            os.replace(temporary, path)
            temporary = None
        except OSError as error:
            _not_written(path, error)
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def _not_written(path: Path, error: OSError) -> None:
    log.warning("could not write the Q&A index cache %s (%s); the next start builds the index again", path, error)
