"""The ecosystem check, after ruff's: autograd-lint over real repositories, held against judged verdicts.

    python benchmarks/ecosystem.py CORPUS [--select CODES] [--repos NAME,NAME] [--jobs N]
                                          [--verdicts FILE] [--save DIR] [--load DIR] [--publish]

CORPUS holds one unpacked repository per folder, named after the part of `owner/name` after the slash
(benchmarks/ecosystem_repos.txt lists them with their commits; the README's Development section says how
to unpack them). Each is linted from its root as the verdicts were judged (`--no-cache --output-format
json --exit-zero`, every rule unless --select), and every diagnostic is looked up in the verdict file
(benchmarks/ecosystem_verdicts.txt: repository, path:line[:column], code, TP/FP/DEBATABLE, reason).

Prints, per rule: its default status, diagnostics, true, false, debatable, new (not judged yet) and
precision (true over judged), then the totals of the default selection and of ALL, then what changed:
every new diagnostic with its message (judge it and add a line to the verdict file) and every judged one
that is no longer reported (a fixed false positive, or a lost true finding). Exits 0; it measures, it
does not gate. Not part of the test suite: it needs the repositories.

`--publish` (a run of every rule over every repository, all judged) records the figures in
benchmarks/ecosystem_results.json and writes each rule's default status and measured precision into
its page (rules/AGLNNN.md) and the README's rules table; tests/test_rule_pages.py checks that the three
agree with each other and with `rules.OPT_IN`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from autograd_lint.rules import OPT_IN, RULES, SECOND_DERIVATIVE_RULES  # noqa: E402 - after the path set-up above

VERDICTS = ("TP", "FP", "DEBATABLE")


@dataclass(frozen=True)
class Verdict:
    repo: str
    path: str
    line: int
    column: int | None
    code: str
    verdict: str
    reason: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" + (f":{self.column}" if self.column else "")


def read_verdicts(path: Path) -> list[Verdict]:
    verdicts = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        fields = raw.split("\t")
        if len(fields) != 5 or fields[3] not in VERDICTS:
            raise SystemExit(
                f"{path}:{number}: expected repo, path:line[:column], code, TP/FP/DEBATABLE, reason (tab-separated)"
            )
        repo, where, code, verdict, reason = fields
        parts = where.rsplit(":", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            file, line, column = parts[0], int(parts[1]), int(parts[2])
        else:
            file, line_text = where.rsplit(":", 1)
            file, line, column = file, int(line_text), None
        verdicts.append(Verdict(repo, file, line, column, code, verdict, reason))
    return verdicts


def lint(folder: Path, select: str | None, jobs: int) -> list[dict]:
    """The repository's diagnostics for these codes (None: the default selection, as a plain run)."""
    command = [
        sys.executable,
        "-m",
        "autograd_lint",
        "--no-cache",
        "--output-format",
        "json",
        "--exit-zero",
        "-q",
        "-j",
        str(jobs),
        *(["--select", select] if select else []),
        ".",
    ]
    done = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE.parent)}
    )
    try:
        diagnostics = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        raise SystemExit(f"{folder}: autograd-lint exited {done.returncode}: {done.stderr.strip()}") from None
    if done.returncode != 0:  # unreadable files or an internal error: the AGL999s are listed as new
        print(f"warning: {folder.name}: autograd-lint exited {done.returncode} {done.stderr.strip()}", file=sys.stderr)
    return diagnostics


def match(diagnostics: list[dict], verdicts: list[Verdict]) -> tuple[list[tuple[dict, Verdict | None]], list[Verdict]]:
    """Each diagnostic with its verdict (None: not judged yet), and the verdicts nothing matched.

    A verdict with a column matches only that column; one without matches any report at its line.
    Each verdict judges one report.
    """
    unused: dict[tuple, list[Verdict]] = defaultdict(list)
    for verdict in verdicts:
        unused[(verdict.path, verdict.line, verdict.code)].append(verdict)
    matched = []
    for diagnostic in diagnostics:
        candidates = unused.get((diagnostic["path"], diagnostic["line"], diagnostic["code"]), [])
        exact = [v for v in candidates if v.column == diagnostic["column"]]
        chosen = (exact or [v for v in candidates if v.column is None] or [None])[0]
        if chosen is not None:
            candidates.remove(chosen)
        matched.append((diagnostic, chosen))
    return matched, [v for group in unused.values() for v in group]


def outputs(args, folder: Path, select: str | None, suffix: str) -> list[dict]:
    """A repository's JSON diagnostics: linted now, or read from --load; kept with --save."""
    name = f"{folder.name}{suffix}.json"
    if args.load:
        return json.loads((args.load / name).read_text())
    diagnostics = lint(folder, select, args.jobs)
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        (args.save / name).write_text(json.dumps(diagnostics, indent=1))
    return diagnostics


RESULTS = HERE / "ecosystem_results.json"
STATUS_LINE = re.compile(r"^\*\*Default:\*\*.*$", re.MULTILINE)


def measured(counts: dict | None) -> str:
    """How a rule's precision reads in its page and the README (None: a rule the check has not run yet)."""
    if counts is None:
        return "not measured yet"
    if not counts.get("diagnostics"):
        return "no diagnostics"
    text = f"{counts.get('TP', 0)}/{counts['diagnostics']} true ({precision(Counter(counts))})"
    if counts.get("DEBATABLE"):
        text += f", {counts['DEBATABLE']} debatable"
    return text


def status_line(code: str, results: dict) -> str:
    """The line under a rule page's title that states its default status and measured precision."""
    default = "opt-in (`--select`/`extend-select`/`ALL`)" if code in OPT_IN else "yes"
    if code in SECOND_DERIVATIVE_RULES:
        default += "; in the default run where the package takes second derivatives"
    if code not in results["rules"]:  # a new rule: --docs-only before the corpus was at hand
        return f"**Default:** {default} · **Measured on real repositories:** not yet (benchmarks/ecosystem.py)"
    repositories = len(results["repositories"])
    return (
        f"**Default:** {default} · **Measured on {repositories} real repositories:** "
        f"{measured(results['rules'].get(code))} (benchmarks/ecosystem.py)"
    )


def publish(per_rule: dict[str, Counter], repositories: list[str]) -> None:
    results = {"repositories": repositories, "rules": {code: dict(per_rule[code]) for code in RULES}}
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    write_docs(results)


def write_docs(results: dict) -> None:
    """Each rule page's status line and the README's rules table, from `results` and the rules' declarations."""
    pages = HERE.parent / "rules"
    for code in RULES:
        page = pages / f"{code}.md"
        text = page.read_text(encoding="utf-8")
        line = status_line(code, results)
        text = (
            STATUS_LINE.sub(line, text, count=1)
            if STATUS_LINE.search(text)
            else text.replace("\n\n", f"\n\n{line}\n\n", 1)
        )
        page.write_text(text, encoding="utf-8")
    readme = HERE.parent / "README.md"
    lines = readme.read_text(encoding="utf-8").split("\n")
    start = lines.index(RULES_TABLE_HEADER[0])
    end = start + next(i for i, line in enumerate(lines[start:]) if not line.startswith("|"))
    lines[start:end] = rules_table(results)
    readme.write_text("\n".join(lines), encoding="utf-8")


RULES_TABLE_HEADER = [
    "| code | name | severity | default | precision on real code | flags |",
    "|---|---|---|---|---|---|",
]


def rules_table(results: dict) -> list[str]:
    """The README's rules table, every cell from the rule's own declaration (code, name, severity, summary),
    `rules.OPT_IN` and the measured results: nothing in it is written by hand."""
    rows = [
        f"| {code} | {rule.name} | {rule.severity.value} | {'opt-in' if code in OPT_IN else 'yes'} | "
        f"{measured(results['rules'].get(code))} | {rule.summary} |"
        for code, rule in ((code, RULES[code]) for code in RULES)
    ]
    return RULES_TABLE_HEADER + rows


def precision(counts: Counter) -> str:
    judged = counts["TP"] + counts["FP"] + counts["DEBATABLE"]
    return f"{100 * counts['TP'] / judged:.0f}%" if judged else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, nargs="?", help="folder of unpacked repositories, one per folder")
    parser.add_argument("--select", default="ALL", help="rule codes to run (default ALL)")
    parser.add_argument("--repos", default="", help="only these folders, comma-separated")
    parser.add_argument("--jobs", "-j", type=int, default=2)
    parser.add_argument("--verdicts", type=Path, default=HERE / "ecosystem_verdicts.txt")
    parser.add_argument("--save", type=Path, help="keep each repository's JSON output in this folder")
    parser.add_argument("--load", type=Path, help="read the JSON outputs saved by --save instead of linting")
    parser.add_argument(
        "--publish",
        action="store_true",
        help="write the figures into ecosystem_results.json, the rule pages and the README",
    )
    parser.add_argument(
        "--docs-only",
        action="store_true",
        help="rewrite the rule pages' status lines and the README table from the last published results, "
        "without the corpus (a new rule reads 'not measured yet')",
    )
    args = parser.parse_args(argv)
    if args.docs_only:
        write_docs(json.loads(RESULTS.read_text()))
        return 0
    if args.corpus is None:
        parser.error("CORPUS is required (or --docs-only)")

    verdicts = read_verdicts(args.verdicts)
    selected = (
        set(RULES)
        if args.select.upper() == "ALL"
        else {
            code
            for code in RULES
            if any(code.startswith(p.strip().upper()) for p in args.select.split(",") if p.strip())
        }
    )
    repo_of_folder = {v.repo.split("/")[-1]: v.repo for v in verdicts}
    wanted = {name.strip() for name in args.repos.split(",") if name.strip()}
    folders = sorted(p for p in args.corpus.iterdir() if p.is_dir() and (not wanted or p.name in wanted))
    if not folders:
        raise SystemExit(
            f"{args.corpus}: no repository folders" + (f" named {', '.join(sorted(wanted))}" if wanted else "")
        )

    # The default selection is measured by a plain run of its own: AGL010 joins it only in packages
    # that take second derivatives, which the ALL run cannot tell.
    measure_default = args.select.upper() == "ALL"
    per_rule: dict[str, Counter] = defaultdict(Counter)
    default_run = Counter()
    new: list[tuple[str, dict]] = []
    gone: list[Verdict] = []
    for folder in folders:
        repo = repo_of_folder.get(folder.name, folder.name)
        diagnostics = outputs(args, folder, ",".join(sorted(selected)), "")
        diagnostics = [d for d in diagnostics if d["code"] in selected or d["code"] not in RULES]
        if measure_default:
            judged, _ = match(outputs(args, folder, None, ".default"), [v for v in verdicts if v.repo == repo])
            for _, verdict in judged:
                default_run["diagnostics"] += 1
                default_run[verdict.verdict if verdict else "new"] += 1
        matched, unmatched = match(diagnostics, [v for v in verdicts if v.repo == repo])
        for diagnostic, verdict in matched:
            counts = per_rule[diagnostic["code"]]
            counts["diagnostics"] += 1
            counts[verdict.verdict if verdict else "new"] += 1
            if verdict is None:
                new.append((repo, diagnostic))
        gone += [v for v in unmatched if v.code in selected]

    print(f"{'rule':8} {'default':8} {'diags':>6} {'TP':>5} {'FP':>5} {'DEB':>5} {'new':>5} {'precision':>10}")
    totals = {"selected": Counter()}
    for code in sorted(selected | set(per_rule)):
        counts = per_rule[code]
        default = "-" if code not in RULES else "opt-in" if code in OPT_IN else "yes"
        print(
            f"{code:8} {default:8} {counts['diagnostics']:6} {counts['TP']:5} {counts['FP']:5} {counts['DEBATABLE']:5} "
            f"{counts['new']:5} {precision(counts):>10}"
        )
        totals["selected"].update(counts)
    if measure_default:
        totals = {"ALL": totals["selected"], "default run": default_run}
    for name, counts in totals.items():
        print(
            f"{name:17} {counts['diagnostics']:6} {counts['TP']:5} {counts['FP']:5} {counts['DEBATABLE']:5} "
            f"{counts['new']:5} {precision(counts):>10}"
        )
    if measure_default:
        print("(default run: a plain run's selection, which adds AGL010 in packages that take second derivatives)")
    if new:
        print(f"\nnew, not judged yet ({len(new)}):")
        for repo, d in new:
            print(f"  {repo}\t{d['path']}:{d['line']}:{d['column']}\t{d['code']}\t{d['message']}")
    if gone:
        print(f"\njudged, no longer reported ({len(gone)}):")
        for v in sorted(gone, key=lambda v: (v.verdict != "TP", v.repo, v.path, v.line)):
            print(f"  {v.verdict:9} {v.repo}\t{v.where}\t{v.code}\t{v.reason}")
    if args.publish:
        if new or not measure_default or wanted:
            raise SystemExit("--publish needs every rule over every repository, with every diagnostic judged")
        publish(per_rule, sorted(repo_of_folder.get(f.name, f.name) for f in folders))
        print("\npublished: benchmarks/ecosystem_results.json, rules/*.md, README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
