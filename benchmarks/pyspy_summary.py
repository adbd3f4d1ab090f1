"""Summarise a py-spy ``--format raw`` (collapsed stacks) file: where the time goes.

    /work/venv/bin/python benchmarks/pyspy_summary.py \\
        benchmarks/out/pyspy-sqlite-msgpack.txt [--top 40] [--lines] [--grep REGEX]

Prints the share of samples per function, inclusive (on the stack) and self
(the innermost frame), with --grep to narrow the inclusive listing.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

LINE = re.compile(r":\d+\)$")


def frames(stack: str, lines: bool) -> list[str]:
    fs = stack.split(";")
    return fs if lines else [LINE.sub(")", f) for f in fs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", type=Path)
    ap.add_argument("--top", type=int, default=35)
    ap.add_argument("--lines", action="store_true", help="keep line numbers (per call site)")
    ap.add_argument("--grep", default=None, help="only frames matching this regex in the listings")
    args = ap.parse_args()
    inclusive: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    total = 0
    for line in args.path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        fs = [f for f in frames(stack, args.lines) if not f.startswith(("thread ", "process "))]
        if not fs:
            continue
        total += count
        for f in set(fs):
            inclusive[f] += count
        self_[fs[-1]] += count
    print(f"{total} samples (non-idle, all threads)")
    print("\ninclusive (share of samples with the function on the stack):")
    keep = re.compile(args.grep) if args.grep else None
    inclusive = Counter({f: n for f, n in inclusive.items() if keep is None or keep.search(f)})
    for f, n in inclusive.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {f}")
    print("\nself (innermost frame):")
    for f, n in self_.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {f}")


if __name__ == "__main__":
    main()
