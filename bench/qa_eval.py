"""Q&A quality and speed on the dev set: top-1, top-3, out-of-scope accuracy, latency percentiles.

holdout_dictated.tsv is long, dictated questions (fillers, dialect, figures as said, two questions in one
message, near misses) written blind from the entries alone; holdout_dictated2.tsv is a second such set, written
later by another writer and never used to change the search.

    python bench/qa_eval.py                 # the shipped content: dev.tsv and every holdout*.tsv (see tests/qa)
    python bench/qa_eval.py --scale 10000   # the same, with synthetic passages growing the index to 10,000
    python bench/qa_eval.py --tune          # also sweep the two thresholds and print the best pairs
    python bench/qa_eval.py --errors        # list every miss

Dev files: `question<TAB>expected`, expected a FAQ id (or passage id) or `out_of_scope`; # starts a comment.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from content.loader import DEFAULT_ROOT, Passage, load_valid_content  # noqa: E402
from content.search import (  # noqa: E402
    ANSWER_THRESHOLD,
    ANSWERED,
    OUT_OF_SCOPE,
    SUGGEST_THRESHOLD,
    UNSURE,
    QaIndex,
)

OUT = "out_of_scope"
DEV_DIR = ROOT / "tests" / "qa"


def dev_files(folder: Path = DEV_DIR) -> list[Path]:
    combined = folder / "dev.tsv"
    return [combined] if combined.exists() else sorted(folder.glob("dev_*.tsv"))


def read_dev(paths: list[Path]) -> list[tuple[str, str, str]]:
    """(question, expected, "file:line") for every data line."""
    rows = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            question, _, expected = line.partition("\t")
            if not expected.strip():
                raise ValueError(f"{path}:{number}: expected question<TAB>expected")
            rows.append((question.strip(), expected.strip(), f"{path.name}:{number}"))
    return rows


@dataclass
class Report:
    in_domain: int = 0
    top1: int = 0  # answered with the expected entry
    top3: int = 0  # the expected entry among the three best candidates
    ranked_first: int = 0  # the expected entry ranked first, whatever the thresholds
    wrong_answers: int = 0  # in-domain question answered with another entry
    unsure: int = 0
    declined: int = 0
    out_domain: int = 0
    out_declined: int = 0
    out_answered: int = 0
    latencies: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    def ratio(self, part: int, whole: int) -> float:
        return part / whole if whole else 0.0

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0

    @property
    def top1_rate(self) -> float:
        return self.ratio(self.top1, self.in_domain)

    @property
    def out_rate(self) -> float:
        return self.ratio(self.out_declined, self.out_domain)


def evaluate(index: QaIndex, rows, *, answer_threshold: float = ANSWER_THRESHOLD,
             suggest_threshold: float = SUGGEST_THRESHOLD) -> Report:
    report = Report()
    for question, expected, where in rows:
        started = time.perf_counter()
        result = index.search(question, answer_threshold=answer_threshold, suggest_threshold=suggest_threshold)
        report.latencies.append((time.perf_counter() - started) * 1000)
        if expected == OUT:
            report.out_domain += 1
            if result.status == OUT_OF_SCOPE:
                report.out_declined += 1
            else:
                if result.status == ANSWERED:
                    report.out_answered += 1
                report.misses.append(f"{where}\t{question}\texpected out_of_scope, got {result.status} "
                                     f"{result.entry_id or [s.id for s in result.suggestions]} ({result.confidence:.2f})")
            continue
        report.in_domain += 1
        candidates = [item for item, _ in result.ranked]
        if candidates[:1] == [expected]:
            report.ranked_first += 1
        if expected in candidates[:3]:
            report.top3 += 1
        if result.status == ANSWERED and result.entry_id == expected:
            report.top1 += 1
            continue
        if result.status == ANSWERED:
            report.wrong_answers += 1
        elif result.status == UNSURE:
            report.unsure += 1
        else:
            report.declined += 1
        report.misses.append(f"{where}\t{question}\texpected {expected}, got {result.status} "
                             f"{result.entry_id or [s.id for s in result.suggestions]} ({result.confidence:.2f}); "
                             f"ranked {[f'{i}:{c:.2f}' for i, c in result.ranked[:3]]}")
    return report


def synthetic_passages(index: QaIndex, count: int, seed: int = 7) -> list[Passage]:
    """Filler passages made of the content's own words (so they compete for the same tokens)."""
    randomness = random.Random(seed)
    words = [w for e in index.faq for t in (e.question, e.answer, *e.phrasings) for w in index.analyzer.words(t)]
    words = [w for w in words if len(w) > 1] or ["党员", "支部", "会议"]
    source = next(iter(index.content.sources))
    return [Passage(id=f"synthetic-{n}#1", doc_id=f"synthetic-{n}", title=f"资料{n}", heading="正文",
                    text="".join(randomness.choices(words, k=randomness.randint(30, 80))), source=source,
                    tags=(), path=Path("synthetic"), line=1) for n in range(count)]


def evaluation_sets(folder: Path = DEV_DIR) -> list[list[Path]]:
    """The dev set and each holdout set, each evaluated on its own (holdout3.tsv is the blind one)."""
    sets = [dev_files(folder)] if dev_files(folder) else []
    return sets + [[path] for path in sorted(folder.glob("holdout*.tsv"))]


def table(reports: list[tuple[str, Report]]) -> list[str]:
    names = [name for name, _ in reports]
    width = max(12, *(len(name) + 2 for name in names))
    lines = [f"{'metric':<34}" + "".join(f"{name:>{width}}" for name in names)]
    rows = [
        ("in-domain questions", lambda r: f"{r.in_domain}"),
        ("top-1 (answered correctly)", lambda r: f"{r.top1_rate:.1%}"),
        ("top-1 ranking (any threshold)", lambda r: f"{r.ratio(r.ranked_first, r.in_domain):.1%}"),
        ("top-3 (among three best)", lambda r: f"{r.ratio(r.top3, r.in_domain):.1%}"),
        ("wrong answers (in-domain)", lambda r: f"{r.ratio(r.wrong_answers, r.in_domain):.1%}"),
        ("unsure / declined (in-domain)", lambda r: f"{r.unsure} / {r.declined}"),
        ("out-of-scope questions", lambda r: f"{r.out_domain}"),
        ("out-of-scope declined", lambda r: f"{r.out_rate:.1%}"),
        ("out-of-scope answered", lambda r: f"{r.out_answered}"),
        ("latency p50 (ms)", lambda r: f"{r.percentile(0.50):.3f}"),
        ("latency p95 (ms)", lambda r: f"{r.percentile(0.95):.3f}"),
        ("latency max (ms)", lambda r: f"{max(r.latencies, default=0):.3f}"),
    ]
    for label, value in rows:
        lines.append(f"{label:<34}" + "".join(f"{value(report):>{width}}" for _, report in reports))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--content", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--dev", type=Path, nargs="*",
                        help="question files, evaluated together (default: tests/qa/dev.tsv and each "
                             "tests/qa/holdout*.tsv, each on its own)")
    parser.add_argument("--scale", type=int, default=0, help="grow the index to this many passages")
    parser.add_argument("--tune", action="store_true", help="sweep the thresholds on the first set")
    parser.add_argument("--errors", action="store_true")
    args = parser.parse_args()

    sets = [args.dev] if args.dev else evaluation_sets()
    if not sets:
        print("no question files: expected tests/qa/dev.tsv or tests/qa/holdout*.tsv", file=sys.stderr)
        return 1
    content = load_valid_content(args.content)
    started = time.perf_counter()
    index = QaIndex(content)
    if args.scale:
        extra = max(0, args.scale - len(content.passages))
        index = QaIndex(content, extra_passages=synthetic_passages(index, extra))
    built = time.perf_counter() - started
    # Peak resident memory of this process (Linux reports KiB): the index and the libraries it loads.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"content: {len(content.faq)} FAQ entries, {len(index.passages)} passages; index built in {built:.2f} s; "
          f"peak RSS {peak:.0f} MB")
    reports = []
    for paths in sets:
        rows = read_dev(paths)
        name = "+".join(path.stem for path in paths)
        print(f"{name}: {len(rows)} questions from {', '.join(p.name for p in paths)}")
        reports.append((name, evaluate(index, rows)))
    print("\n".join(table(reports)))
    if args.errors:
        for name, report in reports:
            print(f"\nmisses in {name}:")
            for miss in report.misses:
                print("  " + miss)
    if args.tune:
        rows = read_dev(sets[0])
        print("\nthreshold sweep on the first set (answer, suggest): top-1, out-of-scope declined, wrong answers")
        results = []
        for answer in [x / 100 for x in range(20, 71, 2)]:
            for suggest in [x / 100 for x in range(16, 61, 4)]:
                if suggest > answer:
                    continue
                tuned = evaluate(index, rows, answer_threshold=answer, suggest_threshold=suggest)
                score = tuned.top1_rate + tuned.out_rate - 2 * tuned.ratio(tuned.wrong_answers + tuned.out_answered,
                                                                           len(rows))
                results.append((score, answer, suggest, tuned))
        for score, answer, suggest, tuned in sorted(results, key=lambda r: -r[0])[:10]:
            print(f"  {answer:.2f} {suggest:.2f}: top-1 {tuned.top1_rate:.1%}, declined {tuned.out_rate:.1%}, "
                  f"wrong {tuned.wrong_answers}+{tuned.out_answered}  (score {score:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
