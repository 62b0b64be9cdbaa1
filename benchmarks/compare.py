"""Speed and memory of autograd-lint against flake8 and ruff, measured side by side in one run.

    python benchmarks/compare.py [PATH] [--rounds N] [--jobs N] [--repositories DIR] [--skip-peers]

PATH defaults to torch's installed source. autograd-lint runs every rule (`--select ALL`). Each tool runs as a whole process (start-up included),
several rounds, alternating, and the script prints medians, ratios, files/s and peak memory, then
how the cold run grows over 1/4, 1/2 and all of the tree, the one-small-file (pre-commit) case, how one
generated module grows with its number of Function classes (benchmarks/generated.py: 1,000, 2,000 and 4,000
copies; linear means 4x for 4x; then 40,000 copies, 9.5 MB, once), and, with --repositories, the cold run over each repository folder in DIR
(seconds per MB, to compare repositories of different sizes).
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
    """torch's installed source, found without importing torch: the peak memory of each tool measured is
    at least this process's (a child's high-water mark starts from its parent's), and torch is 200 MB."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("torch is not installed here: give the tree to measure")
    return list(spec.submodule_search_locations)[0]


def python_files(root: str) -> list[str]:
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in ("__pycache__",))
        found += [os.path.join(directory, f) for f in sorted(files) if f.endswith(".py")]
    return found


def measure(command: list[str], cwd: str) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MB of the process and the children it waited for, their CPU seconds)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def tool(name: str) -> str | None:
    path = BIN / name
    return str(path) if path.exists() else shutil.which(name)


def compare_with_peers(args, root, files, megabytes, work, lint, flake8, ruff, commands) -> None:
    missing = [name for name, path in (("flake8", flake8), ("ruff", ruff)) if not path]
    print(f"tree: {root}: {len(files)} files, {megabytes:.1f} MB; {args.rounds} rounds, -j {args.jobs}")
    if missing:
        print(f"not installed, not measured: {', '.join(missing)} (pip install {' '.join(missing)})")
    subprocess.run(
        commands["autograd-lint warm"], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )  # fill the cache
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    memory: dict[str, float] = {name: 0.0 for name in commands}
    for _ in range(args.rounds):
        for name, command in commands.items():  # alternating, so drift hits every tool alike
            seconds, peak, cpu_seconds = measure(command, work)
            times[name].append(seconds)
            cpu[name].append(cpu_seconds)
            memory[name] = max(memory[name], peak)
    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    print(f"\n{'tool':34} {'median s':>9} {'files/s':>9} {'peak MB':>8}")
    for name in commands:
        print(f"{name:34} {medians[name]:9.2f} {len(files) / medians[name]:9.0f} {memory[name]:8.0f}")
    print()
    cold, warm = medians["autograd-lint cold"], medians["autograd-lint warm"]
    for name in commands:
        if name.startswith("flake8"):
            print(f"cold / {name}: {cold / medians[name]:.3f}  (goal <= 0.15)")
            # CPU seconds are steadier than wall time where other work shares the machine
            print(f"  in CPU seconds: {cpu_medians['autograd-lint cold'] / cpu_medians[name]:.3f}")
        if name.startswith("ruff"):
            print(f"warm / {name}: {warm / medians[name]:.2f}  (goal <= 1.5)")
    print("\ncold run over part of the tree (linear growth expected):")
    for fraction in (4, 2, 1):
        subset = files[: len(files) // fraction]
        seconds = statistics.median(
            measure([lint, "-q", "--exit-zero", "--no-cache", "--select", "ALL", "-j", str(args.jobs), *subset], work)[
                0
            ]
            for _ in range(args.rounds)
        )
        size = sum(os.path.getsize(f) for f in subset) / 1e6
        print(f"  1/{fraction}: {len(subset):5d} files {size:6.1f} MB {seconds:7.2f} s  {size / seconds:5.2f} MB/s")
    small = min((f for f in files if os.path.getsize(f) > 2000), key=os.path.getsize)
    print(f"\none small file ({os.path.getsize(small)} bytes), start-up included:")
    ours = statistics.median(
        measure([lint, "-q", "--exit-zero", "--no-cache", "--select", "ALL", small], work)[0]
        for _ in range(args.rounds * 2)
    )
    line = f"  autograd-lint {ours:.2f} s"
    if flake8:
        theirs = statistics.median(
            measure([flake8, "--select", "F", "--exit-zero", small], work)[0] for _ in range(args.rounds * 2)
        )
        line += f", flake8 {theirs:.2f} s, ratio {ours / theirs:.2f} (goal <= 0.8)"
    print(line)


def generated_growth(lint: str, work: str, rounds: int) -> None:
    """One module of N copies of a small Function module (benchmarks/generated.py), N = 1,000, 2,000, 4,000."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from generated import copies

    print("\none module of N copies of a 17-line Function module, --select ALL (linear: 4x for 4x N):")
    first = None
    for count in (1000, 2000, 4000, 40000):
        if count == 40000:
            print("  (goal for N=40,000, 9.5 MB: under 60 s and 1 GB; one round)")
            rounds = 1
        path = os.path.join(work, f"copies_{count}.py")
        Path(path).write_text(copies(count), encoding="utf-8")
        runs = [
            measure([lint, "-q", "--exit-zero", "--no-cache", "--select", "ALL", path], work) for _ in range(rounds)
        ]
        seconds = statistics.median(run[0] for run in runs)
        peak = max(run[1] for run in runs)
        first = first or seconds
        size = os.path.getsize(path) / 1e6
        print(f"  N={count:5d} {size:5.2f} MB {seconds:7.2f} s  x{seconds / first:4.2f}  peak {peak:5.0f} MB")


def repositories(lint: str, work: str, folder: str, jobs: int) -> None:
    """Each repository of `folder`, cold, every rule: seconds per MB of Python, so sizes compare."""
    print(f"\nrepositories under {folder}, cold, --select ALL, -j {jobs}:")
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isdir(path):
            continue
        files = python_files(path)
        size = sum(os.path.getsize(f) for f in files) / 1e6
        if not files:
            continue
        seconds, peak, _ = measure(
            [lint, "-q", "--exit-zero", "--no-cache", "--select", "ALL", "-j", str(jobs), path], work
        )
        print(
            f"  {name:28} {len(files):5d} files {size:6.1f} MB {seconds:7.2f} s {seconds / size:6.2f} s/MB  peak {peak:5.0f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repositories", help="a folder of repositories, one per subfolder, each timed cold")
    parser.add_argument("--skip-peers", action="store_true", help="only the growth series and the repositories")
    args = parser.parse_args()
    root = os.path.abspath(args.path or default_tree())
    files = python_files(root)
    megabytes = sum(os.path.getsize(f) for f in files) / 1e6
    work = tempfile.mkdtemp(prefix="agl-bench-")
    cache = os.path.join(work, "cache")
    lint = tool("autograd-lint")
    flake8, ruff = tool("flake8"), tool("ruff")
    commands = {
        "autograd-lint cold": [lint, "-q", "--exit-zero", "--no-cache", "--select", "ALL", "-j", str(args.jobs), root],
        "autograd-lint warm": [
            lint,
            "-q",
            "--exit-zero",
            "--select",
            "ALL",
            "--cache-dir",
            cache,
            "-j",
            str(args.jobs),
            root,
        ],
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
    if not args.skip_peers:
        compare_with_peers(args, root, files, megabytes, work, lint, flake8, ruff, commands)
    generated_growth(lint, work, args.rounds)
    if args.repositories:
        repositories(lint, work, args.repositories, args.jobs)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
