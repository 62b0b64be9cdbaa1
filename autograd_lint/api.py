"""The library API: lint source text or paths and get diagnostics back, no CLI involved."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading
from dataclasses import dataclass, field

from .config import Config, find_pyproject, load_config
from .core.diagnostic import INTERNAL_ERROR_CODE, INTERNAL_ERROR_NAME, SPECIAL_RULES, Diagnostic, FileError, Severity
from .facts.second_derivatives import SecondDerivativeScope, takes_second_derivatives
from .io.cache import ResultCache
from .io.discovery import discover
from .io.module_names import module_name_for_path
from .io.reading import SourceError, module_source, read_bytes


@dataclass
class LintResult:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    files_checked: int = 0


def lint_source(
    source: str | bytes, path: str = "<string>", config: Config | None = None, verbose: bool = False
) -> list[Diagnostic]:
    """Diagnostics for one module's source. Bytes are decoded as Python would (BOM, coding cookie); a
    `path` ending in `.ipynb` makes `source` a notebook's JSON, reported by cell.

    Raises SourceError for bytes that cannot be decoded and for a malformed notebook.
    """
    from .engine import lint_module  # libcst is loaded only when something is parsed

    config = config or Config()
    module = module_source(path, source)
    module_name = module_name_for_path(path) if not path.startswith("<") else None
    second_derivatives = takes_second_derivatives(module.text)
    return lint_module(module, path, config.codes_for(path, second_derivatives), module_name, verbose=verbose)


def lint_paths(
    paths: list[str],
    config: Config | None = None,
    verbose: bool = False,
    jobs: int = 1,
    cache_dir: str | os.PathLike | None = None,
    prefilter: bool = True,
) -> LintResult:
    """Diagnostics for every Python file under `paths`, sorted by path, line, column and code.

    `config=None` uses the project's configuration as the command line does: `[tool.autograd-lint]` of
    the nearest pyproject.toml at or above the current directory (raises ConfigError for a bad one);
    `Config()` is the built-in defaults whatever is configured. `jobs` > 1 lints files (or, among few files, a long file's regions) in that many processes (same results, same order); with `cache_dir`,
    files whose bytes, path, linter version and rule selection are unchanged are not linted again.
    `prefilter=False` parses every file, even those no rule's text trigger matches (for testing
    that the triggers lose nothing).
    """
    if config is None:
        config = project_config()
    result = LintResult()
    cache = ResultCache(cache_dir) if cache_dir is not None else None
    pending: list[tuple[str, bytes, tuple[str, ...], bool, bool]] = []
    keys: dict[str, str] = {}
    second_derivatives = SecondDerivativeScope()
    # Whether a package takes second derivatives changes the selection only where nothing selects or
    # deselects the rules that matter there: otherwise its files are not read for it.
    scope_matters = config.selected_codes(True) != config.selected_codes(False)
    for path in discover(list(paths), config, result.errors):
        try:
            data = read_bytes(path)
        except SourceError as error:
            result.errors.append(FileError(path, str(error)))
            continue
        codes = config.codes_for(path, scope_matters and second_derivatives.covers(path, data))
        if cache is not None:
            keys[path] = cache.key(path, data, codes)
            cached = cache.get(path, keys[path])
            if cached is not None:
                result.files_checked += 1
                result.diagnostics.extend(cached)
                continue
        pending.append((path, data, tuple(codes), verbose, prefilter))
    for path, diagnostics, failure, as_read in _run(pending, jobs):
        if failure is not None:
            result.errors.append(FileError(path, failure))
            continue
        result.files_checked += 1
        result.diagnostics.extend(diagnostics)
        if cache is not None and as_read and not any(d.code == INTERNAL_ERROR_CODE for d in diagnostics):
            cache.put(path, keys[path], diagnostics)
    result.diagnostics.sort(key=Diagnostic.sort_key)
    result.errors.sort(key=lambda e: e.path)
    return result


def project_config(start: str | os.PathLike | None = None) -> Config:
    """The configuration a run from `start` (default: the current directory) uses: the nearest pyproject.toml
    with a `[tool.autograd-lint]` table at or above it, else the defaults."""
    return load_config(find_pyproject(os.fspath(start) if start is not None else os.getcwd()))


# Below this many files a process pool costs more than it saves (the pre-commit case).
_POOL_THRESHOLD = 8


def _run(tasks: list, jobs: int):
    """(path, diagnostics, failure, whether the file linted had the bytes its task was made from) per task,
    in order. With a pool, the list of tasks is emptied: the workers read their files themselves, because a
    forked worker starts with everything this process holds, and the sources of a large tree held here made
    every worker that much bigger."""
    if jobs <= 1 or len(tasks) < _POOL_THRESHOLD:
        # a long file among few is linted in regions in `jobs` processes (engine.lint_text)
        return (_lint_task(task, jobs)[:3] + (True,) for task in tasks)
    # Imported here: a run of a few files (pre-commit) never starts a pool, and start-up is most of its time.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    # Big files first so that no worker is left with a large one at the end.
    order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i][1]))
    batches = _batches(order, [len(task[1]) for task in tasks], jobs)
    digests = [_digest(task[1]) for task in tasks]
    unread = [(path, None, *rest) for path, _, *rest in tasks]
    tasks.clear()
    tasks = unread
    by_index: dict[int, tuple] = {}
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_ignore_interrupts) as pool:
            try:
                results = pool.map(_lint_batch, [[tasks[i] for i in batch] for batch in batches])
                for batch, batch_results in zip(batches, results):
                    for index, result in zip(batch, batch_results):
                        by_index[index] = result
            except KeyboardInterrupt:
                # Stop now, not after the queued files: end the workers (they ignore SIGINT, so that
                # only this process reports the interrupt).
                _quiet_pool_manager_on_interrupt()
                for process in list((pool._processes or {}).values()):
                    process.terminate()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    except BrokenProcessPool:
        # A worker died (a crash in native code, the OOM killer): the files it had not reported are
        # linted again one by one, each in a process of its own, so that one file's crash costs
        # only that file.
        for index in order:
            if index not in by_index:
                by_index[index] = _lint_task_isolated(tasks[index], context)
    return [by_index[i][:3] + (by_index[i][3] == digests[i],) for i in range(len(tasks))]


def _batches(order: list[int], sizes: list[int], jobs: int) -> list[list[int]]:
    """The tasks in `order`, cut into batches a worker takes one at a time, each of about 1/(64 jobs) of the
    bytes: a long file is a batch of its own, short ones go many to a batch (a task handed over alone costs
    more than a short file's lint). Batches of as many files each put the largest files of a tree in the first
    one: over torch's source, 60 % of the work went to one worker while the other ran out of files."""
    batch_bytes = max(sum(sizes) // (jobs * 64), 1)
    batches: list[list[int]] = [[]]
    filled = 0
    for index in order:
        if batches[-1] and filled >= batch_bytes:
            batches.append([])
            filled = 0
        batches[-1].append(index)
        filled += sizes[index]
    return batches


def _lint_batch(tasks: list) -> list[tuple[str, list[Diagnostic], str | None, str | None]]:
    return [_lint_task(task) for task in tasks]


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _quiet_pool_manager_on_interrupt() -> None:
    """The pool's manager thread fails the futures of the workers just terminated, and on a future that
    `map` already cancelled CPython 3.11 raises InvalidStateError there, printed as a thread traceback
    after our one-line message. The run is ending with the interrupt, so that error is dropped."""
    previous = threading.excepthook

    from concurrent.futures import InvalidStateError

    def hook(args) -> None:
        if not isinstance(args.exc_value, InvalidStateError):
            previous(args)

    threading.excepthook = hook


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _lint_task_isolated(task, context) -> tuple[str, list[Diagnostic], str | None, str | None]:
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(_lint_task, task).result()
    except BrokenProcessPool:
        path = task[0]
        return path, [_crash_diagnostic(path)], None, None


def _crash_diagnostic(path: str) -> Diagnostic:
    message = "the process linting this file died (a crash in native code, or killed); it was not checked"
    explanation = SPECIAL_RULES[INTERNAL_ERROR_CODE][2]
    return Diagnostic(path, 1, 1, INTERNAL_ERROR_CODE, INTERNAL_ERROR_NAME, Severity.ERROR, message, 1, 1, explanation)


def _lint_task(task, jobs: int = 1) -> tuple[str, list[Diagnostic], str | None, str | None]:
    """(path, diagnostics, failure, the digest of the bytes read here when the task came without them)."""
    from .engine import lint_module  # libcst is loaded only when something is parsed (not on a warm run)

    path, data, codes, verbose, prefilter = task
    digest = None
    try:
        if data is None:
            data = read_bytes(path)
            digest = _digest(data)
        module = module_source(path, data)
    except SourceError as error:
        return path, [], str(error), digest
    try:
        module_name = module_name_for_path(path)
    except (OSError, ValueError):
        module_name = None
    diagnostics = lint_module(module, path, list(codes), module_name, verbose=verbose, prefilter=prefilter, jobs=jobs)
    return path, diagnostics, None, digest
