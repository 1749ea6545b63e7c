"""`bench/run`: the five figures users feel, measured against the real bot over loopback, as one table.

    bench/run                 full run (a few minutes); writes bench/RESULTS.md
    bench/run --quick         tiny sizes, seconds; checks the benchmarks still work (tests/test_bench_smoke.py)
    bench/run --only ack,single
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from bench import ack, bulk, ingest, single, storm
from bench.common import Row, utc_now_text

BENCHMARKS = {"ack": ack, "ingest": ingest, "storm": storm, "bulk": bulk, "single": single}
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def table(rows: list[Row]) -> str:
    head = ("figure", "target", "measured", "verdict")
    cells = [head] + [(r.figure, r.target, r.measured, r.verdict) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(4)).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def notes(rows: list[Row], heading=lambda title: f"{title}:") -> str:
    """Details of each figure, then what each miss means."""
    out = []
    for title, lines in (("Details", [f"- {r.figure}: {r.detail}" for r in rows if r.detail]),
                         ("Misses: by how much, why, what would close it",
                          [f"- {r.figure}: {n}" for r in rows for n in r.notes])):
        if lines:
            out += ["", heading(title), *lines]
    return "\n".join(out).strip()


def markdown(rows: list[Row], info: dict, elapsed: float, load_after: str) -> str:
    lines = [
        "# Benchmark results", "",
        f"Last full run: {utc_now_text()}, `bench/run` took {elapsed:.0f} s.", "",
        f"Machine: {info['nproc']} CPUs (`nproc`), {info['cpu']}, Python {info['python']}; "
        f"load average (1, 5, 15 min) {info['load']} before the run, {load_after} after.", "",
        "| figure | target | measured | verdict |", "|---|---|---|---|",
    ]
    lines += [f"| {r.figure} | {r.target} | {r.measured} | {r.verdict} |" for r in rows]
    if any(r.notes or r.detail for r in rows):
        lines += ["", notes(rows, heading=lambda title: f"## {title}\n")]
    lines += ["", "See bench/README.md for what each figure means and how it is measured.", ""]
    return "\n".join(lines)


def run_one(name: str, *, quick: bool) -> list[Row]:
    t0 = time.monotonic()
    try:
        return BENCHMARKS[name].run(quick=quick)
    except Exception as exc:   # one broken benchmark must not hide the others' figures
        traceback.print_exc()
        return [Row(f"{name}", "-", f"error: {type(exc).__name__}: {str(exc)[:200]}", "ERROR")]
    finally:
        print(f"bench: {name} done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, numbers mean nothing")
    p.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    p.add_argument("--results", metavar="FILE", default=None,
                   help="where to write the Markdown results (default: bench/RESULTS.md on a full run of all five; "
                        "'-' for nowhere)")
    args = p.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}")
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

    info = machine()
    print(f"bench: {'quick' if args.quick else 'full'} run of {', '.join(chosen)} on {info['nproc']} CPUs "
          f"({info['cpu']}), Python {info['python']}, load {info['load']}", file=sys.stderr, flush=True)
    started = time.monotonic()
    if args.quick:
        # Sizes are tiny and the numbers mean nothing, so the five run side by side: a smoke run in seconds.
        with ThreadPoolExecutor(len(chosen)) as pool:
            results = list(pool.map(lambda name: run_one(name, quick=True), chosen))
    else:
        results = [run_one(name, quick=False) for name in chosen]   # one at a time: they must not disturb each other
    rows: list[Row] = [row for result in results for row in result]
    elapsed = time.monotonic() - started
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())

    print()
    print(table(rows))
    if any(r.notes or r.detail for r in rows):
        print()
        print(notes(rows))
    print(f"\n{len(rows)} figures in {elapsed:.0f} s; load average {info['load']} before, {load_after} after.")

    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2, default=str))
    target = args.results or (str(RESULTS) if not args.quick and set(chosen) == set(BENCHMARKS) else "-")
    if target != "-":
        Path(target).write_text(markdown(rows, info, elapsed, load_after))
        print(f"results written to {target}")
    return 1 if any(r.verdict == "ERROR" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
