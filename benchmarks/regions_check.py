"""Linting a file in regions (`autograd_lint.regions`) reports what linting it whole does: every .py file
of at least `--from` characters under the given folders, linted with every rule both ways, must give the
same diagnostics, byte for byte as JSON.

    python benchmarks/regions_check.py --from 16000 --size 4000 .venv/lib/python3.11/site-packages/torch

`--from`, `--size` and `--share` lower the threshold and the region size and raise the largest component's
share of a real run (`regions.RegionLimits`) so that many files, and many cuts in each, are compared. Prints each file that differs and
the counts: files compared, files cut in regions (the others fell back to the whole file), regions, equal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from multiprocessing import Pool

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autograd_lint.engine import lint_text  # noqa: E402
from autograd_lint.regions import RegionLimits, plan_regions  # noqa: E402
from autograd_lint.rules import RULES  # noqa: E402

CODES = sorted(RULES)


def compare(job: tuple[str, RegionLimits]) -> tuple[str, int, bool, str]:
    """(path, regions it was cut into (0: linted whole), equal, the first difference)."""
    path, limits = job
    with open(path, encoding="utf-8", errors="replace") as handle:
        source = handle.read()
    plan = plan_regions(source, limits)
    whole = _as_json(lint_text(source, path, CODES, "module", regions=None))
    cut = _as_json(lint_text(source, path, CODES, "module", regions=limits))
    difference = ""
    if whole != cut:
        only_whole = sorted(set(whole) - set(cut))[:3]
        only_cut = sorted(set(cut) - set(whole))[:3]
        difference = f"whole only: {only_whole}\n    regions only: {only_cut}"
    return path, len(plan.regions) if plan is not None else 0, whole == cut, difference


def _as_json(diagnostics) -> list[str]:
    return [json.dumps(asdict(d), sort_keys=True) for d in diagnostics]


def python_files(folders: list[str], at_least: int) -> list[str]:
    found = []
    for folder in folders:
        if os.path.isfile(folder):
            found.append(folder)
            continue
        for root, subfolders, files in os.walk(folder):
            subfolders.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                if name.endswith(".py") and os.path.isfile(path) and os.path.getsize(path) >= at_least:
                    found.append(path)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--from", dest="regions_from", type=int, default=16_000)
    parser.add_argument("--size", dest="region_size", type=int, default=4_000)
    parser.add_argument("--share", dest="largest_share", type=float, default=1.0)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    args = parser.parse_args()
    files = python_files(args.folders, args.regions_from)
    cut = regions = equal = 0
    with Pool(args.jobs) as pool:
        limits = RegionLimits(args.regions_from, args.region_size, args.largest_share)
        jobs = [(path, limits) for path in files]
        for path, count, same, difference in pool.imap_unordered(compare, jobs, chunksize=1):
            cut += count > 0
            regions += count
            equal += same
            if not same:
                print(f"DIFFERS {path}\n    {difference}", flush=True)
    print(f"{len(files)} files compared, {cut} cut in regions ({regions} regions), {equal} equal")
    sys.exit(0 if equal == len(files) else 1)


if __name__ == "__main__":
    main()
