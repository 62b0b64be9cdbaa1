"""A confirm session: the interpreter checked once, then a harness per finding, run in parallel, one
verdict each (from the verdict cache where the finding is unchanged)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TypeVar

from ..core.diagnostic import UNSUPPRESSIBLE, Diagnostic
from ..core.module import ParsedModule
from ..core.rule import NoqaRule
from ..engine import run_rules
from ..io.module_names import module_name_for_path
from ..io.reading import ModuleSource, SourceError, module_source, read_module_source
from ..rules import RULES
from . import runner
from .builders import builder_for
from .harness import CannotBuildHarness, build_script, runtime_prelude
from .runner import CUDA_CANNOT_INITIALIZE, RunLimits, RunResult, allow_runs, cancel_all
from .runtime.probes import NOT_REPRODUCED_IN_ONE_PROCESS
from .verdict_cache import VerdictCache
from .warm_worker import warm_workers, worker_for

# How often a long run calls `progress` while no harness finishes.
PROGRESS_TICK_SECONDS = 2.0
PREFLIGHT_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class ConfirmEnvironment:
    """The interpreter harnesses run in, as the preflight found it."""

    python: str  # its path (a bare --python name as found on PATH)
    torch_version: str
    device: str  # what harnesses build their tensors on (--device)
    gpu: str | None  # the GPU's name with --device cuda

    def describe(self) -> str:
        device = f"{self.device} ({self.gpu})" if self.gpu else self.device
        return f"torch {self.torch_version} on {device} in {self.python}"


class ConfirmEnvironmentError(Exception):
    """The interpreter cannot run harnesses; the message names it and what failed."""


# Run like a harness (same launcher, limits and result channel), so that what it finds holds for them.
_PREFLIGHT = (
    runtime_prelude()
    + """
try:
    import torch
except BaseException as exc:  # noqa: BLE001 - whatever the import does, it is the reason
    _agl_probes.report("inconclusive", f"`import torch` failed: {type(exc).__name__}: {exc}")
gpu = None
try:
    if _agl_probes.DEVICE == "cuda" and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
except Exception:  # noqa: BLE001 - a broken driver means no CUDA for the harnesses either
    pass
import json
_agl_probes.report("confirmed", json.dumps({"torch": str(torch.__version__), "gpu": gpu}))
"""
)


def check_environment(limits: RunLimits) -> ConfirmEnvironment:
    """Run the interpreter once, importing torch, before any harness; ConfirmEnvironmentError if it cannot."""
    python = limits.python

    def fail(reason: str) -> ConfirmEnvironmentError:
        return ConfirmEnvironmentError(f"confirm cannot run with --python {python}: {reason}")

    def no_gpu(reason: str) -> ConfirmEnvironmentError:
        return ConfirmEnvironmentError(f"confirm cannot run with --device cuda: {reason}")

    if os.sep not in python:  # a bare name, found on PATH as the harness's launch will
        if shutil.which(python) is None:
            raise fail("not found on PATH")
    elif not os.path.exists(python):
        raise fail("no such file")
    elif os.path.isdir(python) or not os.access(python, os.X_OK):
        raise fail("not an executable file")
    allow_runs()
    with _terminate_as_interrupt():
        # A cold `import torch` can take longer than a short --confirm-timeout that warm harnesses meet.
        result = run_harness(_PREFLIGHT, replace(limits, timeout=max(limits.timeout, PREFLIGHT_TIMEOUT_SECONDS)))
    if result.verdict != "confirmed":
        if result.evidence.startswith(CUDA_CANNOT_INITIALIZE):  # the bootstrap, capping GPU memory
            raise no_gpu(f"{python} cannot initialize CUDA {result.evidence.removeprefix(CUDA_CANNOT_INITIALIZE)}")
        if result.evidence.startswith("`import torch`"):
            raise fail(result.evidence)
        # The runner words failures for a harness running the user's code; here it only imported torch.
        reason = result.evidence.replace("the harness", "the interpreter", 1).replace(
            "the code under test", "the interpreter", 1
        )
        raise fail("running `import torch` there: " + reason)
    try:
        found = json.loads(result.evidence)
        return ConfirmEnvironment(
            shutil.which(python) or python, str(found["torch"]), limits.device, found["gpu"] and str(found["gpu"])
        )
    except (ValueError, TypeError, KeyError):
        raise fail(f"unexpected answer to `import torch`: {result.evidence[:200]}") from None


def confirm_diagnostics(
    diagnostics: list[Diagnostic],
    limits: RunLimits,
    jobs: int = 1,
    sources: dict[str, str] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    cache: VerdictCache | None = None,
) -> dict[Diagnostic, RunResult]:
    """A verdict for every diagnostic a recipe covers (all but AGL000/AGL999).

    `progress(done, total, cached)` is called before the first harness, whenever one ends, and every
    few seconds in between; `total` counts the harnesses to run, `cached` the verdicts the cache had.
    """
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
                verdicts[diagnostic] = RunResult(
                    "inconclusive", f"harness could not be built: cannot re-read the file: {error}", 0.0
                )
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
    to_run: list[tuple[Diagnostic, str, str | None]] = []
    for diagnostic, script in scripts:
        key = cache.key(script, diagnostic.path) if cache is not None else None
        cached = cache.get(key) if cache is not None and key is not None else None
        if cached is not None:
            verdicts[diagnostic] = cached
        else:
            to_run.append((diagnostic, script, key))
    cached_count = len(scripts) - len(to_run)

    def record(item: tuple[Diagnostic, str | None], result: RunResult) -> None:
        diagnostic, key = item
        verdicts[diagnostic] = result
        if cache is not None and key is not None:
            cache.put(key, result)

    run_scripts(
        [((diagnostic, key), script) for diagnostic, script, key in to_run],
        limits,
        jobs,
        record,
        None if progress is None else lambda done, total: progress(done, total, cached_count),
    )
    return verdicts


_Item = TypeVar("_Item")


def run_harness(script: str, limits: RunLimits) -> RunResult:
    """One harness: forked from the warm worker that serves these limits inside `warm_workers()` (started on
    first use), else (outside it, turned off, or a worker that cannot start) under a launcher of its own.
    A finding not reproduced in a one-process group, where collectives are identities, runs again in a
    two-process one, where they change values (a reduction skipped at world size 1, as real code does)."""
    result = runner.run_harness(script, limits, worker_for(limits))
    if limits.world_size != 1 or not result.evidence.startswith(NOT_REPRODUCED_IN_ONE_PROCESS):
        return result
    two_ranks = replace(limits, world_size=2)
    again = runner.run_harness(script, two_ranks, worker_for(two_ranks))
    seconds = result.seconds + again.seconds
    if again.verdict == "confirmed":
        return RunResult(again.verdict, f"in a two-process group (world size 2): {again.evidence}", seconds)
    return RunResult(result.verdict, f"{result.evidence}; at world size 2: {again.verdict}: {again.evidence}", seconds)


def run_scripts(
    scripts: list[tuple[_Item, str]],
    limits: RunLimits,
    jobs: int,
    record: Callable[[_Item, RunResult], None],
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Run each (item, harness script) under the runner, `jobs` at a time, forked from a warm worker (see
    warm_worker.py) unless it cannot start, handing `record` each item's result as it ends; `progress(done, total)` is called before the first, whenever one ends, and every few seconds."""
    allow_runs()
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    with warm_workers():  # stopped once no harness runs any more
        try:
            with _terminate_as_interrupt():
                running = {pool.submit(run_harness, script, limits): item for item, script in scripts}
                if progress is not None:
                    progress(0, len(scripts))
                while running:
                    finished, _ = wait(running, timeout=PROGRESS_TICK_SECONDS, return_when=FIRST_COMPLETED)
                    for future in finished:
                        record(running.pop(future), future.result())
                    if progress is not None:
                        progress(len(scripts) - len(running), len(scripts))
        except BaseException:
            # Ctrl-C (or SIGTERM, or anything else): kill every harness now rather than wait for them, run
            # no queued one, and let each worker thread remove its harness's temp directory before leaving.
            cancel_all()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


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
    if isinstance(rule, NoqaRule):
        raise CannotBuildHarness(f"{diagnostic.code} is about a noqa comment: there is nothing to run under torch")
    builder = builder_for(diagnostic.code)
    if builder is None:
        raise CannotBuildHarness(f"{diagnostic.code} has no confirm recipe yet")
    outcome = run_rules(module, [rule])[rule]
    for finding in outcome.findings:
        start = module.position(finding.node).start
        reported = source.reported_message(finding.message)
        if (start.line, start.column + 1) == (line, diagnostic.column) and reported == diagnostic.message:
            return build_script(module, builder.build(module, finding), diagnostic.code.lower())
    if outcome.error is not None:
        raise outcome.error
    raise CannotBuildHarness("the finding is no longer in the file (it changed since it was linted)")
