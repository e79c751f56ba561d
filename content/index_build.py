"""Building a Q&A index in a child process, which writes it pickled into a file the server then reads.

A build reads jieba's main dictionary, checks every text for slips, and imports and fits scikit-learn and
bm25s: seconds of pure Python and some 200 MB, most of it garbage or libraries the search no longer needs.
Done in the serving process, it holds the interpreter lock for those seconds (every member's reply waits on
the event loop meanwhile) and leaves scikit-learn, SciPy and a fragmented heap behind. A child process does
the work and exits; it writes straight into the file the server reads the index from (the new cache file,
or a temporary one), so the server reads a built index exactly as it reads the cache (content/index_cache.py)
and never holds the pickle itself in memory.

    python -m content.index_build ROOT    (stdout: the pickled index; exit 3: the content's problems, pickled)

If the child cannot run (no interpreter to start, killed, a crash), the index is built in this process
instead, as before: slower for the server, but it starts.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

CONTENT_PROBLEMS = 3
# The package's parent folder: the child imports content/ from where this process did.
_IMPORT_ROOT = Path(__file__).resolve().parent.parent


class BuildFailed(Exception):
    """The child process did not write an index (not a content problem)."""


def build_into(root: Path, file: BinaryIO) -> None:
    """Write the index of the content under root, pickled, into file (a real file, from its current
    position). Raises ContentError when the content has problems."""
    from content.loader import ContentError

    started = time.perf_counter()
    file.flush()
    start = file.tell()
    try:
        problems = _build_in_child(root, file, start)
    except BuildFailed as error:
        log.error("building the Q&A index in a child process failed (%s); building it in this process", error)
        file.seek(start)
        file.truncate()
        problems = _build_here(root, file)
        file.flush()
    if problems:
        raise ContentError(problems, root)
    log.info("Q&A index built in %.1f s", time.perf_counter() - started)


def _build_in_child(root: Path, file: BinaryIO, start: int) -> list:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_IMPORT_ROOT), environment.get("PYTHONPATH")]))
    try:
        # Run from the package's parent folder: `-m` looks in the working folder first, and a folder there
        # named content (a deployment's own content, say) must not stand in for the package.
        child = subprocess.run([sys.executable, "-m", "content.index_build", str(root.resolve())], env=environment,
                               cwd=_IMPORT_ROOT, stdin=subprocess.DEVNULL, stdout=file, stderr=subprocess.PIPE,
                               check=False)
    except OSError as error:
        raise BuildFailed(f"could not start {sys.executable}: {error}") from error
    # The child wrote through the file's descriptor: what this process's file object knows of its position
    # is stale, so it is set, never assumed.
    end = file.seek(0, os.SEEK_END)
    if child.returncode == CONTENT_PROBLEMS:
        file.seek(start)
        return pickle.load(file)
    if child.returncode != 0 or end == start:
        last = child.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise BuildFailed(f"exit status {child.returncode}: {' | '.join(last) or 'no message'}")
    if child.stderr.strip():  # warnings from the libraries: worth a look, not a failure
        log.warning("building the Q&A index: %s", child.stderr.decode("utf-8", "replace").strip()[-2000:])
    return []


def _build_here(root: Path, file: BinaryIO) -> list:
    """Build in this process and write the index into file; the content's problems (the file untouched)."""
    from content.loader import load_content
    from content.search import QaIndex

    content, problems = load_content(root)
    if problems:
        return problems
    pickle.dump(QaIndex(content), file, protocol=pickle.HIGHEST_PROTOCOL)
    return []


def main(arguments: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    # The index goes to standard output, and only the index: whatever a library prints goes to standard
    # error instead.
    output = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    with output:
        problems = _build_here(Path(arguments[0]), output)
        if problems:
            pickle.dump(problems, output, protocol=pickle.HIGHEST_PROTOCOL)
            return CONTENT_PROBLEMS
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
