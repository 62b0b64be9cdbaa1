"""Confirm mode on the true findings of the ecosystem check's repositories, in an environment that has
their pure-Python dependencies.

    python benchmarks/confirm_real.py CORPUS --python PY [--repos NAME,NAME] [--jobs N] [--timeout S]
                                             [--verdicts FILE] [--save DIR] [--load DIR]

CORPUS is the ecosystem check's (benchmarks/ecosystem.py): one unpacked repository per folder. PY is an
interpreter with torch and the repositories' pure-Python dependencies (benchmarks/real_env_requirements.txt
says how to build it), never their compiled extensions. For each repository, the files that hold a TP
verdict are linted from its root with every rule and `--confirm --python PY`, and each TP verdict's
diagnostic is looked up with its confirm verdict.

Prints, per rule and in total: the true findings, how many are confirmed, not reproduced, inconclusive
by reason (needs CUDA or a compiled extension, needs a torch.distributed process group, missing
dependency, forward failed on the synthesized inputs, harness not built, other) and not reported any more; then the confirm rate over the findings that
need no CUDA (the true findings less those needing CUDA or a compiled extension); then every finding not
confirmed, with its evidence. Exits 0; it measures, it does not gate. Not part of the test suite: it needs
the repositories and the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ecosystem import Verdict, match, read_verdicts  # noqa: E402 - after the path set-up above

OUTCOMES = (
    "confirmed",
    "not-reproduced",
    "needs CUDA/extension",
    "needs process group",
    "missing dependency",
    "forward failed",
    "harness not built",
    "other",
    "not reported",
)
CUDA_OUTCOME = "needs CUDA/extension"


def confirm(folder: Path, files: list[str], python: str, jobs: int, timeout: int) -> list[dict]:
    """The diagnostics of `files` (relative to the repository's root) with their confirm verdicts."""
    command = [
        sys.executable,
        "-m",
        "autograd_lint",
        "check",
        "--select",
        "ALL",
        "--confirm",
        "--python",
        python,
        "--confirm-timeout",
        str(timeout),
        "--no-cache",
        "--output-format",
        "json",
        "--exit-zero",
        "-q",
        "-j",
        str(jobs),
        *files,
    ]
    done = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE.parent)}
    )
    try:
        return json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        raise SystemExit(f"{folder}: autograd-lint exited {done.returncode}: {done.stderr.strip()}") from None


_EXTENSION_NAME = re.compile(r"Extension\(\s*(?:name\s*=\s*)?[\"']([\w.]+)[\"']")
_MISSING_MODULE = re.compile(r"No module named '([\w.]+)'")


def compiled_extensions(folder: Path) -> set[str]:
    """The extension modules the repository's setup.py files build (`amp_C`, `mmcv._ext`): what a pure-Python
    environment cannot have."""
    names: set[str] = set()
    for setup in folder.glob("**/setup.py"):
        try:
            names |= set(_EXTENSION_NAME.findall(setup.read_text(encoding="utf-8", errors="replace")))
        except OSError:
            continue
    return names


def is_compiled(module: str, folder: Path, extensions: set[str]) -> bool:
    """A module the environment lacks because it is compiled: built by the repository's setup.py, a
    module of the repository's own packages with no Python source (`pkg._C`), Triton, or named for CUDA."""
    if module in extensions or any(module.startswith(name + ".") for name in extensions):
        return True
    if module.split(".")[0] == "triton" or re.search(r"cuda|_C$|_ext$", module):
        return True
    parts = module.split(".")
    if (folder / parts[0]).is_dir():
        own = folder.joinpath(*parts)
        return not (own.with_suffix(".py").exists() or (own / "__init__.py").exists() or own.is_dir())
    return False


def outcome(result: dict | None, folder: Path, extensions: set[str]) -> str:
    if result is None:
        return "not reported"
    verdict, evidence = result["verdict"], result["evidence"]
    if verdict != "inconclusive":
        return verdict
    if evidence.startswith("needs a CUDA device"):
        return CUDA_OUTCOME
    if evidence.startswith("needs a torch.distributed process group"):
        return "needs process group"
    if evidence.startswith("missing dependency"):
        missing = _MISSING_MODULE.search(evidence)
        if missing and is_compiled(missing.group(1), folder, extensions):
            return CUDA_OUTCOME
        return "missing dependency"
    if evidence.startswith("forward failed"):
        # The code under test saying that an extension the repository builds is not installed.
        named = set(re.findall(r"\w+", evidence))
        return CUDA_OUTCOME if named & extensions else "forward failed"
    if evidence.startswith("harness could not be built"):
        return "harness not built"
    return "other"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="folder of unpacked repositories, one per folder")
    parser.add_argument("--python", required=True, help="interpreter with torch and the repositories' dependencies")
    parser.add_argument("--repos", default="", help="only these folders, comma-separated")
    parser.add_argument("--jobs", "-j", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=60, help="--confirm-timeout per harness (default 60)")
    parser.add_argument("--verdicts", type=Path, default=HERE / "ecosystem_verdicts.txt")
    parser.add_argument("--save", type=Path, help="keep each repository's JSON output in this folder")
    parser.add_argument("--load", type=Path, help="read the JSON outputs saved by --save instead of running")
    args = parser.parse_args(argv)

    true_findings: dict[str, list[Verdict]] = defaultdict(list)
    for verdict in read_verdicts(args.verdicts):
        if verdict.verdict == "TP":
            true_findings[verdict.repo.split("/")[-1]].append(verdict)
    wanted = {name.strip() for name in args.repos.split(",") if name.strip()}
    folders = sorted(
        args.corpus / name for name in true_findings if (args.corpus / name).is_dir() and (not wanted or name in wanted)
    )
    if not folders:
        raise SystemExit(f"{args.corpus}: no repository folders with true findings")

    per_rule: dict[str, Counter] = defaultdict(Counter)
    left: list[tuple[str, Verdict, str, str]] = []
    for folder in folders:
        verdicts = true_findings[folder.name]
        name = f"{folder.name}.json"
        if args.load:
            diagnostics = json.loads((args.load / name).read_text())
        else:
            files = sorted({v.path for v in verdicts})
            diagnostics = confirm(folder, files, args.python, args.jobs, args.timeout)
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / name).write_text(json.dumps(diagnostics, indent=1))
        matched, unmatched = match(diagnostics, verdicts)
        results: list[tuple[Verdict, dict | None]] = [(v, d.get("confirm")) for d, v in matched if v is not None]
        results += [(v, None) for v in unmatched]
        extensions = compiled_extensions(folder)
        for verdict, result in results:
            found = outcome(result, folder, extensions)
            per_rule[verdict.code]["TP"] += 1
            per_rule[verdict.code][found] += 1
            if found != "confirmed":
                left.append((folder.name, verdict, found, result["evidence"] if result else ""))

    short = {
        "not-reproduced": "not-rep",
        CUDA_OUTCOME: "cuda/ext",
        "needs process group": "group",
        "missing dependency": "missing",
    }
    headers = ["rule", "TP", *(short.get(o, o.split()[0]) for o in OUTCOMES), "rate (no CUDA)"]
    print("\t".join(headers))
    total = Counter()
    for code in sorted(per_rule):
        counts = per_rule[code]
        total.update(counts)
        print("\t".join([code, str(counts["TP"]), *(str(counts[o]) for o in OUTCOMES), rate(counts)]))
    print("\t".join(["total", str(total["TP"]), *(str(total[o]) for o in OUTCOMES), rate(total)]))
    print(
        f"\nconfirmed {total['confirmed']} of {total['TP'] - total[CUDA_OUTCOME]} true findings that need no CUDA "
        f"({rate(total)}); {total[CUDA_OUTCOME]} need CUDA or a compiled extension; of those that do not, "
        f"{total['needs process group']} need a torch.distributed process group"
    )
    if left:
        print(f"\nnot confirmed ({len(left)}):")
        for repo, verdict, found, evidence in sorted(left, key=lambda item: (item[2], item[0], item[1].where)):
            print(f"  {found:20} {repo}\t{verdict.where}\t{verdict.code}\t{evidence}")
    return 0


def rate(counts: Counter) -> str:
    runnable = counts["TP"] - counts[CUDA_OUTCOME]
    return f"{100 * counts['confirmed'] / runnable:.0f}%" if runnable else "-"


if __name__ == "__main__":
    sys.exit(main())
