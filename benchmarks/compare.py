"""`make bench-compare BASE=<revision>`: the worker-host run on another revision and on this checkout,
alternated in one session, so that a change is judged against the code before it on the same
machine at the same time (a shared machine's speed moves by ±10 % between runs, more than most
single changes are worth).

The other revision is cloned from this repository into a temporary folder with its own `.venv`
(built from its lock files, as `make` does); both run `python -m benchmarks` with the same
arguments, the worker-host run only unless `--bench-args` says otherwise, `--runs` times each,
base first. The table gives every run, then each side's range.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER_HOST_ONLY = (
    "--corpora photos --sizes 300 --latencies 0 --reimport-images 0 --sharing-large 0 --burst-requests 0 "
    "--pollers-images 100 --accept-products 100 --worker-host-images 1000"
)
# (label, key in the worker-host report, or in its CPU by step; digits)
COLUMNS = (
    ("images/s", "images_per_second", 1),
    ("ratio to Pillow", "ratio_to_pillow", 2),
    ("ratio to Pillow beside busy cores", "ratio_to_pillow_beside_busy", 2),
    ("main process, ms an image", "main_process_ms_per_image", 2),
    ("codec processes, ms an image", "codec_processes", 2),
    ("download", "download", 2),
    ("codec hand-off", "codec_handoff", 2),
    ("store", "store", 2),
    ("database", "database", 2),
    ("Celery and the rest", "celery_and_rest", 2),
    ("first request after start, s", "first_request_seconds", 2),
)


def checkout(revision: str, folder: Path) -> Path:
    """`revision` of this repository in `folder`, with its dependencies installed."""
    clone = folder / "base"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", revision], check=True)
    subprocess.run(["make", "--no-print-directory", ".venv/.dev-installed"], cwd=clone, check=True)
    return clone


def bench(checkout_root: Path, arguments: list[str], out: Path) -> dict:
    """One `python -m benchmarks` run in `checkout_root`; its worker-host figures."""
    python = checkout_root / ".venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "benchmarks", *arguments, "--out", str(out)], cwd=checkout_root, check=True)
    report = json.loads((out / "latest.json").read_text())
    host = report.get("worker_host") or {}
    first = host.get("first_request") or {}
    return {**host, **host.get("cpu_ms_per_image", {}), "first_request_seconds": first.get("seconds")}


def cell(run: dict, key: str, digits: int) -> str:
    value = run.get(key)
    return "–" if value is None else f"{value:.{digits}f}"


def spread(runs: list[dict], key: str, digits: int) -> str:
    values = [run[key] for run in runs if run.get(key) is not None]
    if not values:
        return "–"
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return low if low == high else f"{low}–{high}"


def table(base: str, runs: list[tuple[str, dict]]) -> str:
    header = "| run | " + " | ".join(label for label, _, _ in COLUMNS) + " |"
    lines = [header, "| --- | " + " | ".join("---:" for _ in COLUMNS) + " |"]
    for label, run in runs:
        lines.append(f"| {label} | " + " | ".join(cell(run, key, digits) for _, key, digits in COLUMNS) + " |")
    for side in (base, "this checkout"):
        mine = [run for label, run in runs if label.startswith(side)]
        lines.append(f"| **{side}** | " + " | ".join(spread(mine, key, digits) for _, key, digits in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the revision to compare this checkout with (a commit, tag or branch)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each side, alternated (default 2)")
    parser.add_argument("--bench-args", default=WORKER_HOST_ONLY, help="the arguments of both sides' benchmark")
    return parser.parse_args(argv)


def main() -> None:
    arguments = parse_arguments()
    bench_arguments = shlex.split(arguments.bench_args)
    runs: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as folder:
        base_root = checkout(arguments.base, Path(folder))
        for number in range(1, arguments.runs + 1):
            for side, root in ((arguments.base, base_root), ("this checkout", ROOT)):
                print(f"bench-compare: {side}, run {number} of {arguments.runs}…", flush=True)
                runs.append((f"{side} #{number}", bench(root, bench_arguments, Path(folder) / f"{len(runs)}")))
    sys.stdout.write("\n" + table(arguments.base, runs))


if __name__ == "__main__":
    main()
