"""Speed and memory of autograd-lint against flake8 and ruff, measured side by side in one run.

    python benchmarks/compare.py [PATH] [--rounds N] [--jobs N]

PATH defaults to torch's installed source. Each tool runs as a whole process (start-up included),
several rounds, alternating, and the script prints medians, ratios, files/s and peak memory, then
how the cold run grows over 1/4, 1/2 and all of the tree, and the one-small-file (pre-commit) case.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def default_tree() -> str:
    import torch  # only to find its source

    return os.path.dirname(torch.__file__)


def python_files(root: str) -> list[str]:
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in ("__pycache__",))
        found += [os.path.join(directory, f) for f in sorted(files) if f.endswith(".py")]
    return found


def measure(command: list[str], cwd: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB of the process and the children it waited for)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def tool(name: str) -> str | None:
    path = BIN / name
    return str(path) if path.exists() else shutil.which(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    root = os.path.abspath(args.path or default_tree())
    files = python_files(root)
    megabytes = sum(os.path.getsize(f) for f in files) / 1e6
    work = tempfile.mkdtemp(prefix="agl-bench-")
    cache = os.path.join(work, "cache")
    lint = tool("autograd-lint")
    flake8, ruff = tool("flake8"), tool("ruff")
    commands = {
        "autograd-lint cold": [lint, "-q", "--exit-zero", "--no-cache", "-j", str(args.jobs), root],
        "autograd-lint warm": [lint, "-q", "--exit-zero", "--cache-dir", cache, "-j", str(args.jobs), root],
    }
    if flake8:
        commands[f"flake8 -j {args.jobs} --select F"] = [
            flake8,
            "-j",
            str(args.jobs),
            "--select",
            "F",
            "--exit-zero",
            root,
        ]
    if ruff:
        commands["ruff --select E9,F --no-cache"] = [
            ruff,
            "check",
            "--no-cache",
            "--select",
            "E9,F",
            "--exit-zero",
            "-q",
            root,
        ]
    missing = [name for name, path in (("flake8", flake8), ("ruff", ruff)) if not path]
    print(f"tree: {root}: {len(files)} files, {megabytes:.1f} MB; {args.rounds} rounds, -j {args.jobs}")
    if missing:
        print(f"not installed, not measured: {', '.join(missing)} (pip install {' '.join(missing)})")
    subprocess.run(
        commands["autograd-lint warm"], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )  # fill the cache
    times: dict[str, list[float]] = {name: [] for name in commands}
    memory: dict[str, float] = {name: 0.0 for name in commands}
    for _ in range(args.rounds):
        for name, command in commands.items():  # alternating, so drift hits every tool alike
            seconds, peak = measure(command, work)
            times[name].append(seconds)
            memory[name] = max(memory[name], peak)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{'tool':34} {'median s':>9} {'files/s':>9} {'peak MB':>8}")
    for name in commands:
        print(f"{name:34} {medians[name]:9.2f} {len(files) / medians[name]:9.0f} {memory[name]:8.0f}")
    print()
    cold, warm = medians["autograd-lint cold"], medians["autograd-lint warm"]
    for name in commands:
        if name.startswith("flake8"):
            print(f"cold / {name}: {cold / medians[name]:.3f}  (goal <= 0.25)")
        if name.startswith("ruff"):
            print(f"warm / {name}: {warm / medians[name]:.2f}  (goal <= 2)")
    print("\ncold run over part of the tree (linear growth expected):")
    for fraction in (4, 2, 1):
        subset = files[: len(files) // fraction]
        seconds = statistics.median(
            measure([lint, "-q", "--exit-zero", "--no-cache", "-j", str(args.jobs), *subset], work)[0]
            for _ in range(args.rounds)
        )
        size = sum(os.path.getsize(f) for f in subset) / 1e6
        print(f"  1/{fraction}: {len(subset):5d} files {size:6.1f} MB {seconds:7.2f} s  {size / seconds:5.2f} MB/s")
    small = min((f for f in files if os.path.getsize(f) > 2000), key=os.path.getsize)
    print(f"\none small file ({os.path.getsize(small)} bytes), start-up included:")
    ours = statistics.median(
        measure([lint, "-q", "--exit-zero", "--no-cache", small], work)[0] for _ in range(args.rounds * 2)
    )
    line = f"  autograd-lint {ours:.2f} s"
    if flake8:
        theirs = statistics.median(
            measure([flake8, "--select", "F", "--exit-zero", small], work)[0] for _ in range(args.rounds * 2)
        )
        line += f", flake8 {theirs:.2f} s, ratio {ours / theirs:.2f} (goal <= 1)"
    print(line)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
