"""A confirm session: a harness per finding, run in parallel, one verdict each."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable

from ..diagnostic import Diagnostic
from ..diagnostic import UNSUPPRESSIBLE
from ..module import ParsedModule
from ..module_names import module_name_for_path
from ..reading import ModuleSource, SourceError, module_source, read_module_source
from ..rules import RULES
from .harness import CannotBuildHarness, build_script
from .runner import RunLimits, RunResult, allow_runs, cancel_all, run_harness

def confirm_diagnostics(
    diagnostics: list[Diagnostic],
    limits: RunLimits,
    jobs: int = 1,
    sources: dict[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[Diagnostic, RunResult]:
    """A verdict for every diagnostic a recipe covers (all but AGL000/AGL999)."""
    verdicts: dict[Diagnostic, RunResult] = {}
    scripts: list[tuple[Diagnostic, str]] = []
    for path in sorted({d.path for d in diagnostics}):
        wanted = [d for d in diagnostics if d.path == path and d.code not in UNSUPPRESSIBLE]
        if not wanted:
            continue
        try:
            # The module the linter saw: a notebook's code cells joined, through the same reader.
            source = module_source(path, sources[path]) if sources and path in sources else read_module_source(path)
            module = ParsedModule(source.text, path, module_name_for_path(path) if os.path.exists(path) else None)
        except (SourceError, Exception) as error:  # noqa: BLE001 - the file changed or vanished since linting
            for diagnostic in wanted:
                verdicts[diagnostic] = RunResult("inconclusive", f"harness could not be built: cannot re-read the file: {error}", 0.0)
            continue
        for diagnostic in wanted:
            try:
                scripts.append((diagnostic, _script_for(module, diagnostic, source)))
            except CannotBuildHarness as reason:
                verdicts[diagnostic] = RunResult("inconclusive", f"harness could not be built: {reason}", 0.0)
            except Exception as error:  # noqa: BLE001 - a recipe's bug must not cost the other verdicts
                verdicts[diagnostic] = RunResult(
                    "inconclusive", f"harness could not be built: internal error {type(error).__name__}: {error}", 0.0
                )
    done = 0

    def run(item: tuple[Diagnostic, str]) -> tuple[Diagnostic, RunResult]:
        return item[0], run_harness(item[1], limits)

    allow_runs()
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        with _terminate_as_interrupt():
            for diagnostic, result in pool.map(run, scripts):
                verdicts[diagnostic] = result
                done += 1
                if progress is not None:
                    progress(done, len(scripts))
    except BaseException:
        # Ctrl-C (or SIGTERM, or anything else): kill every harness now rather than wait for them, run
        # no queued one, and let each worker thread remove its harness's temp directory before leaving.
        cancel_all()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return verdicts


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled) during confirm: handled like Ctrl-C, so the harnesses are killed."""

    exit_code = 128 + signal.SIGTERM


@contextmanager
def _terminate_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _script_for(module: ParsedModule, diagnostic: Diagnostic, source: ModuleSource | None = None) -> str:
    """The harness for the finding `diagnostic` reports; `source` (the file's, when it is a notebook) says
    where the finding is in the module, since a notebook's diagnostics count lines inside cells."""
    source = source or ModuleSource(module.source)
    line = source.module_line(diagnostic.cell, diagnostic.line)
    rule = RULES[diagnostic.code]()
    for finding in rule.check(module):
        start = module.position(finding.node).start
        reported = source.reported_message(finding.message)
        if (start.line, start.column + 1) == (line, diagnostic.column) and reported == diagnostic.message:
            try:
                harness = rule.confirm_harness(module, finding)
            except NotImplementedError:
                raise CannotBuildHarness(f"{diagnostic.code} has no confirm recipe yet") from None
            return build_script(module, harness)
    raise CannotBuildHarness("the finding is no longer in the file (it changed since it was linted)")
