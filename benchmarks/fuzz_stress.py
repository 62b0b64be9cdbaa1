"""The long fuzzing run: lint generated programs on every core until N have run, and count internal errors.

    python -m benchmarks.fuzz_stress [--programs 100000] [--jobs N] [--seed 0] [--out fuzz-failures]

(run from the repository root; it needs the `test` extra: hypothesis and hypothesmith). Programs come
from tests/fuzzing.py in chunks of one source each, by turns:
- `mutated`: a bundled fixture with lines deleted, duplicated, swapped, re-indented, renamed or cut;
- `grammar` / `node`: a hypothesmith program (from_grammar / from_node), and derived from it, since
  generating is the slow part and linting the cheap one: the program itself, the program placed in a
  Function and an activation (`shape`, several slot choices) and cut short (`truncate`).

Each program is linted with every rule and the prefilter off (tests/fuzzing.check). An exception or an
AGL999 is an internal error; a worker process that dies is a crash. Either saves a reproducer
(`<out>/<kind>-<hash>.py` with the error in `.txt`). The run prints progress, then
`programs run: N, internal errors: N, crashes: N`, and exits 1 if there was any, else 0.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import queue
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

CHUNK = {"mutated": 400, "grammar": 40, "node": 4}
ORDER = (
    "mutated",
    "grammar",
    "mutated",
    "grammar",
    "mutated",
    "grammar",
    "mutated",
    "grammar",
    "mutated",
    "grammar",
    "mutated",
    "grammar",
    "mutated",
    "grammar",
    "mutated",
    "grammar",
    "mutated",
    "grammar",
    "mutated",
    "node",
)
DERIVED_SHAPES = 4  # shaped variants per generated program; each original and shaped one is also cut short once


def derived(kind: str, source: str) -> list[str]:
    import fuzzing

    if kind == "mutated":
        return [source]
    digest = int.from_bytes(hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
    programs = [source, fuzzing.truncate(source, digest)]
    for n in range(DERIVED_SHAPES):
        variant = (digest >> (n * 13)) & 0xFFFF ^ n
        shaped = fuzzing.shape(source, variant)
        programs += [shaped, fuzzing.truncate(shaped, digest // (n + 3))]
    return programs


def worker(number: int, chunks: multiprocessing.Queue, results: multiprocessing.Queue, out: str, seed: int) -> None:
    import fuzzing
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as with_seed

    current = os.path.join(out, f".current-{number}")
    while True:
        try:
            index = chunks.get(timeout=1)
        except queue.Empty:
            continue
        if index is None:
            return
        kind = ORDER[index % len(ORDER)]
        counts = {"programs": 0, "internal": 0}

        @with_seed(seed * 1_000_003 + index)
        @settings(
            max_examples=CHUNK[kind],
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(fuzzing.STRATEGIES[kind])
        def run(source: str) -> None:
            for program in derived(kind, source):  # noqa: B023 - run() is called in this iteration
                with open(current, "w", encoding="utf-8", errors="surrogatepass") as handle:
                    handle.write(program)  # what a crash leaves for the parent to save
                problem = fuzzing.check(program)
                counts["programs"] += 1  # noqa: B023 - run() is called in this iteration
                if problem is not None:
                    counts["internal"] += 1  # noqa: B023 - run() is called in this iteration
                    save(out, "internal-error", program, problem)

        try:
            run()
        except Exception as error:  # noqa: BLE001 - hypothesis giving up on a chunk is not the linter's fault
            print(
                f"chunk {index} ({kind}): hypothesis stopped: {type(error).__name__}: {error}",
                file=sys.stderr,
                flush=True,
            )
        results.put((number, index, kind, counts["programs"], counts["internal"]))


def save(out: str, what: str, program: str, problem: str) -> str:
    name = f"{what}-{hashlib.sha1(program.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"
    with open(os.path.join(out, name + ".py"), "w", encoding="utf-8", errors="surrogatepass") as handle:
        handle.write(program)
    with open(os.path.join(out, name + ".txt"), "w", encoding="utf-8") as handle:
        handle.write(problem)
    return name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="fuzz-failures", help="where reproducers are saved")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    chunks, results = context.Queue(), context.Queue()
    next_chunk = 0
    workers: dict[int, multiprocessing.Process] = {}
    totals = {"programs": 0, "internal": 0, "crashes": 0}
    by_kind: dict[str, int] = {}
    started = time.monotonic()
    last_report = started

    def start(number: int) -> None:
        process = context.Process(target=worker, args=(number, chunks, results, args.out, args.seed), daemon=True)
        process.start()
        workers[number] = process

    for number in range(args.jobs):
        start(number)
    # Two chunks in flight per worker; more are handed out as results come in.
    in_flight = 0
    for _ in range(args.jobs * 2):
        chunks.put(next_chunk)
        next_chunk += 1
        in_flight += 1
    while in_flight:
        try:
            number, index, kind, programs, internal = results.get(timeout=5)
            in_flight -= 1
            totals["programs"] += programs
            totals["internal"] += internal
            by_kind[kind] = by_kind.get(kind, 0) + programs
            if totals["programs"] < args.programs:
                chunks.put(next_chunk)
                next_chunk += 1
                in_flight += 1
        except queue.Empty:
            pass
        for number, process in list(workers.items()):
            if not process.is_alive() and process.exitcode not in (0, None):
                totals["crashes"] += 1
                current = os.path.join(args.out, f".current-{number}")
                problem = f"the worker process died with exit code {process.exitcode} while linting this program"
                try:
                    program = Path(current).read_text(encoding="utf-8", errors="surrogatepass")
                except OSError:
                    program = ""
                print(
                    f"CRASH: worker {number} exit {process.exitcode}; saved {save(args.out, 'crash', program, problem)}",
                    flush=True,
                )
                in_flight -= 1  # its chunk is lost; the replacement takes new ones
                start(number)
                if totals["programs"] < args.programs:
                    chunks.put(next_chunk)
                    next_chunk += 1
                    in_flight += 1
        if time.monotonic() - last_report > 30:
            last_report = time.monotonic()
            rate = totals["programs"] / (last_report - started)
            print(
                f"[{last_report - started:6.0f} s] programs run: {totals['programs']} ({rate:.0f}/s), "
                f"internal errors: {totals['internal']}, crashes: {totals['crashes']}",
                flush=True,
            )
    for _ in workers:
        chunks.put(None)
    for process in workers.values():
        process.join(timeout=30)
    for number in workers:
        try:
            os.remove(os.path.join(args.out, f".current-{number}"))
        except OSError:
            pass
    elapsed = time.monotonic() - started
    print(f"by source: {', '.join(f'{kind} {count}' for kind, count in sorted(by_kind.items()))}")
    print(
        f"programs run: {totals['programs']}, internal errors: {totals['internal']}, crashes: {totals['crashes']} "
        f"({elapsed:.0f} s, {args.jobs} processes)"
    )
    if totals["internal"] or totals["crashes"]:
        print(f"reproducers in {os.path.abspath(args.out)}")
        return 1
    if not os.listdir(args.out):
        shutil.rmtree(args.out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
