"""Command-line start-up: wall time and peak memory of answers that need no model.

Each cell runs a fresh process `--runs` times (median wall time, peak RSS of the child): the
command line of this checkout and of an earlier commit (`--before`, checked out in a
temporary git worktree and run with this environment's packages), beside `import
tensorflow` alone as the reference measured in the same run.

    python benchmarks/cli_startup.py --before a9abc82 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mammo_keras.atomic import write_json_atomically, write_text_atomically

CASES = {
    "--help": ["--help"],
    "--version": ["--version"],
    "argument error": ["export", "model.keras", "--out", "o", "--format", "bogus"],
    "subcommand --help": ["train", "--help"],
}
REPOSITORY = Path(__file__).resolve().parents[1]


def timed(command: list[str], env: dict, runs: int, cwd: Path | None = None) -> dict:
    """Median wall seconds and the largest peak RSS (MiB) over `runs` fresh processes."""
    seconds, peaks = [], []
    for _ in range(runs):
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        _, _, usage = os.wait4(child.pid, 0)  # this child's own peak, not the largest so far
        seconds.append(time.perf_counter() - started)
        peaks.append(usage.ru_maxrss)
    return {"median_s": round(statistics.median(seconds), 3),
            "peak_rss_mib": round(max(peaks) / 1024, 1)}


def measure(source: Path, runs: int) -> dict:
    """{case: timing} of the command line whose package lies in `source`."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    # run from `source`: `python -m` puts the working folder first on the path
    found = subprocess.run([sys.executable, "-c", "import mammo_keras; print(mammo_keras.__file__)"],
                           env=env, cwd=source, capture_output=True, text=True, check=True).stdout
    if not Path(found.strip()).is_relative_to(source):
        raise SystemExit(f"the package under {source} is not the one imported ({found.strip()})")
    return {case: timed([sys.executable, "-m", "mammo_keras.cli", *arguments], env, runs, source)
            for case, arguments in CASES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="an earlier commit to measure beside this checkout")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    reference = timed([sys.executable, "-c", "import tensorflow"], dict(os.environ), args.runs)
    results = {"now": measure(REPOSITORY, args.runs)}
    if args.before:
        with tempfile.TemporaryDirectory() as folder:
            worktree = Path(folder) / "before"
            subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach",
                            str(worktree), args.before], check=True, capture_output=True)
            try:
                results["before"] = measure(worktree, args.runs)
            finally:
                subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "remove", "--force",
                                str(worktree)], check=True)
    # imported after the measurements: a parent holding TensorFlow would lend its resident
    # memory to every child it forks (ru_maxrss counts the pages before exec)
    from mammo_keras.provenance import provenance

    record = {**provenance(), "runs": args.runs, "before_commit": args.before,
              "import_tensorflow": reference, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(args.out / "cli_startup.json", record)
    write_text_atomically(args.out / "cli_startup.md", markdown(record))
    print(markdown(record))


def markdown(record: dict) -> str:
    reference = record["import_tensorflow"]["median_s"]
    columns = [name for name in ("before", "now") if name in record["results"]]
    lines = ["# Command-line start-up", "",
             f"Median of {record['runs']} fresh processes; `{record['command']}`; commit "
             f"{record['commit']}; {record['hardware']}. `import tensorflow` alone takes "
             f"{reference:.2f} s ({record['import_tensorflow']['peak_rss_mib']} MiB) on this "
             "machine in the same run.", "",
             "| answer | " + " | ".join(f"{name} s (MiB)" for name in columns)
             + " | now / import tensorflow |",
             "|---|" + "---:|" * (len(columns) + 1)]
    for case in CASES:
        cells = [f"{record['results'][name][case]['median_s']:.2f} "
                 f"({record['results'][name][case]['peak_rss_mib']})" for name in columns]
        ratio = record["results"]["now"][case]["median_s"] / reference
        lines.append(f"| `mammo-keras {' '.join(CASES[case])}` | " + " | ".join(cells) + f" | {ratio:.2f} |")
    if record.get("before_commit"):
        lines += ["", f"before: commit {record['before_commit']}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
