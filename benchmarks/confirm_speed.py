"""Confirm's and the audit's time with the warm worker and without it (every harness under a launcher of its
own, AUTOGRAD_LINT_WARM_WORKER=0), measured in one run on the same findings and Functions.

    python benchmarks/confirm_speed.py [PATH ...] [--jobs N] [--limit N] [--skip-audit]

PATH defaults to the project's fixtures. It lints PATH, confirms every finding (no verdict cache) with the
warm worker and then without it, and audits every Function the same two ways; it prints the seconds, the
time per harness or per Function, the ratio, and how many verdicts differ between the two runs (0 expected).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograd_lint import Config, lint_paths  # noqa: E402 - after the project is on sys.path
from autograd_lint.confirm.audit import audit_paths  # noqa: E402
from autograd_lint.confirm.runner import RunLimits  # noqa: E402
from autograd_lint.confirm.session import confirm_diagnostics  # noqa: E402
from autograd_lint.confirm.warm_worker import WARM_WORKER_SWITCH  # noqa: E402

WAYS = (("warm worker", "1"), ("a launcher per harness", "0"))


def timed(switch: str, run):
    os.environ[WARM_WORKER_SWITCH] = switch
    started = time.monotonic()
    result = run()
    return time.monotonic() - started, result


def compare(what: str, unit: str, count: int, runs: list[tuple[str, float, dict]]) -> None:
    print(f"{what}: {count} {unit}{'es' if unit.endswith('s') else 's'}")
    for way, seconds, verdicts in runs:
        counts = ", ".join(f"{n} {v}" for v, n in sorted(Counter(verdicts.values()).items()))
        print(f"  {way:24} {seconds:7.1f} s  {1000 * seconds / max(count, 1):7.0f} ms per {unit}  ({counts})")
    (_, warm, warm_verdicts), (_, cold, cold_verdicts) = runs
    differing = sum(warm_verdicts[key] != cold_verdicts.get(key) for key in warm_verdicts)
    print(f"  ratio (without / with the warm worker): {cold / warm:.1f}x; verdicts differing: {differing}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=[str(ROOT / "fixtures")])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, help="confirm only the first N findings and audit the first N files")
    parser.add_argument("--skip-audit", action="store_true")
    arguments = parser.parse_args()
    limits = RunLimits(sys.executable, timeout=60)
    print(f"{sys.executable}, {arguments.jobs} jobs, {os.cpu_count()} CPUs")

    diagnostics = lint_paths(arguments.paths, Config()).diagnostics[: arguments.limit]
    runs = []
    for way, switch in WAYS:
        seconds, verdicts = timed(switch, lambda: confirm_diagnostics(diagnostics, limits, arguments.jobs))
        runs.append((way, seconds, {d: r.verdict for d, r in verdicts.items()}))
    compare("confirm", "harness", len(runs[0][2]), runs)

    if not arguments.skip_audit:
        paths = arguments.paths
        if arguments.limit:
            paths = sorted(str(p) for path in paths for p in Path(path).rglob("*.py"))[: arguments.limit]
        runs = []
        for way, switch in WAYS:
            seconds, report = timed(switch, lambda: audit_paths(paths, Config(), limits, arguments.jobs))
            runs.append((way, seconds, {(f.path, f.line, f.name): f.verdict for f in report.functions}))
        compare("audit", "Function", len(runs[0][2]), runs)


if __name__ == "__main__":
    main()
