"""The `autograd-lint` command line (click), a thin layer over the library API.

Exit codes follow ruff: 0 no findings, 1 findings, 2 usage, configuration, file or internal error.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from .api import LintResult, lint_paths
from .config import (
    Config,
    ConfigError,
    anchor_pattern,
    find_pyproject,
    load_config,
    parse_per_file_ignores,
    validate_codes,
)
from .confirm import DEVICES
from .core.diagnostic import INTERNAL_ERROR_CODE, INTERNAL_ERROR_NAME, SYNTAX_ERROR_CODE, SYNTAX_ERROR_NAME, FileError
from .io.cache import DEFAULT_DIRECTORY as DEFAULT_CACHE
from .io.discovery import discover
from .io.module_names import module_name_for_path
from .io.reading import SourceError, decode_source, module_source, read_bytes, source_encoding
from .report.escaping import escape_controls
from .report.formats import Sources
from .report.output import (
    FORMATS,
    HUMAN_FORMATS,
    STATISTICS_FORMATS,
    confirm_summary,
    render,
    render_statistics,
    summary,
)
from .report.pages import rule_page
from .rules import RULES
from .version import __version__

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT


class _LinterGroup(click.Group):
    """`autograd-lint [OPTIONS] [PATH]...` lints (`check`, the default command); `audit`, `rule`, `clean` and
    `help` are the other commands, so a directory with one of those names is given as `./rule`."""

    def parse_args(self, ctx, args):
        if args[:1] == ["help"]:
            topic = args[1:2] or ["check"]
            if topic[0] not in self.commands:
                _fail(f"help: unknown command {topic[0]!r} (commands: {', '.join([*self.commands, 'help'])})")
            args = [topic[0], "--help"]
        elif not args or args[0] not in self.commands:
            args = ["check", *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        # Ctrl-C (SIGTERM too, during --confirm): what was started is already killed and its temp
        # directories removed; one line, and 130 (143 for SIGTERM) as shells report a signal.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as interrupt:
            click.echo("autograd-lint: error: interrupted", err=True)
            sys.exit(getattr(interrupt, "exit_code", EXIT_INTERRUPTED))


def _codes_option(value: tuple[str, ...]) -> tuple[str, ...] | None:
    if not value:
        return None
    return tuple(code for item in value for code in item.split(","))


def _say(kind: str, message: object) -> None:
    """One `autograd-lint: error|warning: ...` line on stderr. Paths and reasons come from the user's files
    (a file name can hold an escape sequence): shown escaped, as every human-readable output is."""
    click.echo(f"autograd-lint: {kind}: {escape_controls(str(message))}", err=True)


def _fail(message: str) -> None:
    _say("error", message)
    sys.exit(EXIT_ERROR)


@click.group(cls=_LinterGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """autograd-lint: find silent gradient bugs in custom torch.autograd.Function code."""


class _CheckCommand(click.Command):
    """The default command; its help (`autograd-lint --help`) also lists the other commands."""

    def format_epilog(self, ctx, formatter):
        group = ctx.parent.command if ctx.parent is not None else None
        if isinstance(group, click.Group):
            rows = [
                (name, group.commands[name].get_short_help_str(limit=90))
                for name in group.list_commands(ctx)
                if name != "check"
            ]
            rows.append(("help [COMMAND]", "Show this help, or a command's."))
            with formatter.section("Commands (autograd-lint COMMAND --help for one)"):
                formatter.write_dl(rows)
        super().format_epilog(ctx, formatter)


def _options(*options: Callable[[Callable], Callable]) -> Callable[[Callable], Callable]:
    """Several click options as one decorator, for the commands that share them."""

    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


# Which rules report, and how the report is printed: the same for `check` and `audit`.
selection_options = _options(
    click.option(
        "--select",
        multiple=True,
        help="Rule codes or prefixes to enable, comma-separated (replaces the configured selection; ALL for every rule).",
    ),
    click.option("--extend-select", multiple=True, help="Rule codes or prefixes to enable on top of the selection."),
    click.option("--ignore", multiple=True, help="Rule codes or prefixes to disable."),
    click.option(
        "--per-file-ignores",
        multiple=True,
        metavar="GLOB:CODES",
        help="Disable CODES (comma-separated) in files matching GLOB; repeatable, added to the configured per-file-ignores.",
    ),
)
report_options = _options(
    click.option(
        "--output-format",
        type=click.Choice(FORMATS),
        default="text",
        show_default=True,
        help="How to print diagnostics: text (concise), full (with the source), json, json-lines, sarif, github (workflow annotations), gitlab (code quality).",
    ),
    click.option(
        "-o",
        "--output-file",
        type=click.Path(dir_okay=False, writable=True),
        help="Write the report to this file instead of stdout (the summary stays on stderr).",
    ),
)


# Where harnesses run their tensors: the same for confirm (`check --confirm`) and `audit`.
def harness_memory_option(name: str):
    """check's `--confirm-memory` and audit's `--memory`: one limit, spelled as each command spells its options."""
    return click.option(
        name,
        type=click.IntRange(min=256),
        default=4096,
        show_default=True,
        help="Memory (data segment) limit of one harness, in MB; with --device cuda, its GPU memory's too.",
    )


device_option = click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="cpu",
    show_default=True,
    help="Device harnesses build their tensors on; with cpu they see no GPU.",
)


@main.command("check", cls=_CheckCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, type=click.Path())
@selection_options
@report_options
@click.option(
    "--color",
    "color_mode",
    type=click.Choice(("auto", "always", "never")),
    default="auto",
    show_default=True,
    help="Colour text and full output: auto colours only on a terminal and never with NO_COLOR set.",
)
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when there are findings (errors still exit 2).")
@click.option("--statistics", is_flag=True, help="Print the number of findings per rule instead of each finding.")
@click.option("--show-files", is_flag=True, help="Print the files that would be linted, one a line, and exit.")
@click.option(
    "--show-settings",
    is_flag=True,
    help="Print the settings used for the first PATH (config file, rules, excludes...) and exit.",
)
@click.option(
    "--add-noqa",
    is_flag=True,
    help="Add `# noqa: CODE` to every line with a finding (merged into an existing noqa comment) and exit 0.",
)
@click.option(
    "--exclude",
    "exclude_patterns",
    multiple=True,
    metavar="PATTERNS",
    help="Globs of files and directories to skip, comma-separated; replaces the configured and default exclude.",
)
@click.option(
    "--extend-exclude",
    "extend_exclude_patterns",
    multiple=True,
    metavar="PATTERNS",
    help="Globs to skip on top of exclude, comma-separated; added to the configured extend-exclude.",
)
@click.option(
    "--force-exclude/--no-force-exclude",
    default=None,
    help="Apply exclude to paths named on the command line too (pre-commit names every file).",
)
@click.option(
    "--respect-gitignore/--no-respect-gitignore",
    default=None,
    help="Skip files that .gitignore files ignore when walking directories [default: respect].",
)
@click.option("-q", "--quiet", is_flag=True, help="Print findings only, no summary.")
@click.option("--stdin-filename", help="The path to report, and to match config against, when linting `-` (stdin).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="A pyproject.toml to read [tool.autograd-lint] from (default: the nearest one).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks of internal errors.")
@click.option(
    "--confirm",
    is_flag=True,
    help="Run each finding under torch in a contained child process and report whether its gradients prove the bug.",
)
@click.option(
    "--confirmed-only",
    is_flag=True,
    help="Leave out findings that --confirm ran and did not reproduce; inconclusive ones stay, marked (implies --confirm).",
)
@click.option(
    "--drop-inconclusive",
    is_flag=True,
    help="With --confirmed-only, leave out inconclusive findings too: report only what torch proved (implies --confirmed-only).",
)
@click.option(
    "--show-progress",
    is_flag=True,
    help="Print confirm's interpreter and progress on stderr even when it is not a terminal (or with -q).",
)
@click.option(
    "--python",
    "python_path",
    type=click.Path(dir_okay=False),
    help="Interpreter (with torch) that runs confirm harnesses [default: this one].",
)
@click.option(
    "--confirm-timeout",
    type=click.FloatRange(min=1),
    default=20.0,
    show_default=True,
    help="Seconds one harness may run before it is killed.",
)
@harness_memory_option("--confirm-memory")
@device_option
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Files linted (and harnesses run) in parallel [default: the number of CPUs].",
)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Lint every file (and run every confirm harness) again, ignoring and not writing the result cache.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help=f"Where results are cached [default: {DEFAULT_CACHE} next to the pyproject.toml, or in the current directory].",
)
@click.version_option(__version__, "--version", prog_name="autograd-lint")
def check(
    paths,
    select,
    extend_select,
    ignore,
    per_file_ignores,
    output_format,
    output_file,
    color_mode,
    exit_zero,
    statistics,
    show_files,
    force_exclude,
    respect_gitignore,
    quiet,
    stdin_filename,
    config_path,
    verbose,
    confirm,
    confirmed_only,
    drop_inconclusive,
    show_progress,
    python_path,
    confirm_timeout,
    confirm_memory,
    device,
    jobs,
    no_cache,
    cache_dir,
    show_settings,
    add_noqa,
    exclude_patterns,
    extend_exclude_patterns,
) -> None:
    """Lint PATHs (default: the current directory). `-` reads a module from stdin."""
    if statistics and output_format not in STATISTICS_FORMATS:
        _fail(
            f"--statistics prints text or JSON, not {output_format} (use --output-format {', '.join(STATISTICS_FORMATS)})"
        )
    try:
        config = _config(config_path, select, extend_select, ignore, per_file_ignores)
        config = _with_excludes(config, exclude_patterns, extend_exclude_patterns)
    except ConfigError as error:
        _fail(str(error))
    config = config.with_overrides(force_exclude=force_exclude, respect_gitignore=respect_gitignore)
    # No PATH means the current directory; PATHs that --force-exclude drops mean nothing to lint.
    paths = list(paths) or ["."]
    stdin_path = stdin_filename or "-"
    read_stdin = "-" in paths
    paths = [p for p in paths if p != "-"]
    if read_stdin and config.force_exclude and stdin_filename and config.is_force_excluded(stdin_filename):
        read_stdin = False
    if show_files:
        _show_files(paths, config, stdin_path if read_stdin else None)
    cache = None if no_cache else (cache_dir or os.path.join(config.root, DEFAULT_CACHE))
    if show_settings:
        _show_settings(paths[0] if paths else stdin_path, config, cache, output_format)
    if add_noqa:
        if read_stdin:
            _fail("--add-noqa rewrites files: it cannot take stdin (-)")
        _add_noqa(paths, config, verbose, jobs or os.cpu_count() or 1, cache, quiet)
    result = LintResult()
    stdin_sources: dict[str, str] = {}
    if read_stdin:
        _lint_stdin(stdin_path, config, result, verbose, stdin_sources)
    cache = None if no_cache else (cache_dir or os.path.join(config.root, DEFAULT_CACHE))
    if paths:
        found = lint_paths(paths, config, verbose=verbose, jobs=jobs or os.cpu_count() or 1, cache_dir=cache)
        result.diagnostics = sorted(result.diagnostics + found.diagnostics, key=lambda d: d.sort_key())
        result.errors += found.errors
        result.files_checked += found.files_checked
    for file_error in result.errors:
        _say("error", file_error)
    verdicts = None
    left_out: tuple[str, ...] = ()
    if confirm or confirmed_only or drop_inconclusive:
        terminal = sys.stderr.isatty()
        progress = _ConfirmProgress(terminal) if show_progress or (terminal and not quiet) else None
        from .confirm.runner import RunLimits  # torch-side machinery, loaded only when asked for

        # A relative --python is relative to here, not to the harness's temp directory.
        python = os.path.abspath(python_path) if python_path and os.sep in python_path else python_path
        limits = RunLimits(python or sys.executable, confirm_timeout, confirm_memory, device)
        verdicts = _confirm(
            result.diagnostics,
            limits,
            jobs or os.cpu_count() or 1,
            stdin_sources,
            cache,
            progress,
            announce=show_progress or not quiet,
        )
        # Only a finding torch ran and did not reproduce is left out by default: one whose harness could
        # not run or ended abnormally may be real, so it stays (marked) unless asked for explicitly.
        if confirmed_only or drop_inconclusive:
            left_out = ("not-reproduced", "inconclusive") if drop_inconclusive else ("not-reproduced",)
            result.diagnostics = [
                d for d in result.diagnostics if d not in verdicts or verdicts[d].verdict not in left_out
            ]
    color = not output_file and output_format in HUMAN_FORMATS and _use_color(color_mode)
    if statistics:
        rendered = render_statistics(result.diagnostics, output_format, verdicts)
    else:
        rendered = render(
            result.diagnostics,
            output_format,
            verdicts,
            errors=result.errors,
            sources=Sources(stdin_sources),
            color=color,
            documentation_url=config.documentation_url,
        )
    if output_file:
        _write_report(output_file, rendered)
    else:
        click.echo(rendered, nl=False, color=color)
    # With --confirm the summary (and its verdict counts) goes to stderr whatever the format.
    if not quiet and (output_format in HUMAN_FORMATS or output_file or verdicts is not None):
        line = summary(result.diagnostics, result.files_checked, len(result.errors))
        click.echo(line if verdicts is None else f"{line} {confirm_summary(verdicts, left_out)}", err=True)
    internal_error = any(d.code == INTERNAL_ERROR_CODE for d in result.diagnostics)
    if result.errors or internal_error:
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_FINDINGS if result.diagnostics and not exit_zero else EXIT_CLEAN)


def _show_files(paths: list[str], config: Config, stdin_path: str | None) -> None:
    """`--show-files`: the files a run would lint, sorted, then exit 0 (2 if a PATH does not exist)."""
    errors: list[FileError] = []
    files = sorted(discover(paths, config, errors)) if paths else []
    if stdin_path is not None:
        files = sorted([*files, stdin_path])
    for error in errors:
        _say("error", error)
    for file in files:
        click.echo(escape_controls(file))
    sys.exit(EXIT_ERROR if errors else EXIT_CLEAN)


def _show_settings(path: str, config: Config, cache: str | None, output_format: str) -> None:
    """`--show-settings`: what a run uses for `path`, one `key = value` line each (TOML values), then exit 0."""
    from .facts.second_derivatives import SecondDerivativeScope

    def toml(value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{json.dumps(key)} = {toml(codes)}" for key, codes in value.items()) + "}"
        return json.dumps(list(value)) if isinstance(value, tuple | list) else json.dumps(value)

    second_derivatives = False
    if os.path.isfile(path):
        try:
            second_derivatives = SecondDerivativeScope().covers(path, read_bytes(path))
        except SourceError:
            pass
    rules = config.codes_for(path, second_derivatives) if path != "-" else config.selected_codes()
    settings = [
        ("path", path),
        ("config-file", config.source or "none (built-in defaults)"),
        ("project-root", config.root),
        ("select", toml(config.select) if config.select is not None else "default (every rule but the opt-in ones)"),
        ("extend-select", toml(config.extend_select)),
        ("ignore", toml(config.ignore)),
        ("per-file-ignores", toml(config.per_file_ignores)),
        ("exclude", toml(config.exclude)),
        ("extend-exclude", toml(config.extend_exclude)),
        ("respect-gitignore", toml(config.respect_gitignore)),
        ("force-exclude", toml(config.force_exclude)),
        ("cache-dir", cache or "none (--no-cache)"),
        ("output-format", output_format),
        ("rules", toml(rules)),
    ]
    click.echo("".join(f"{key} = {value}\n" for key, value in settings), nl=False)
    sys.exit(EXIT_CLEAN)


def _add_noqa(paths: list[str], config: Config, verbose: bool, jobs: int, cache: str | None, quiet: bool) -> None:
    """`--add-noqa`: `# noqa: CODE` on every line with a finding, so that a codebase adopts the linter with
    zero findings; only files with something to add are written, never one with a syntax error."""
    import ast

    from .core.noqa import add_noqa

    result = lint_paths(paths, config, verbose=verbose, jobs=jobs, cache_dir=cache)
    errors = [str(error) for error in result.errors]
    by_path: dict[str, list] = {}
    for diagnostic in result.diagnostics:
        by_path.setdefault(diagnostic.path, []).append(diagnostic)
    added = 0
    for path, diagnostics in by_path.items():
        if any(d.cell is not None for d in diagnostics):
            # The file is the notebook's JSON, and the lines are inside its cells: writing there would
            # mean rewriting the JSON, which a user's notebook tooling owns.
            _say("warning", f"{path}: not changed: --add-noqa does not edit notebooks; add `# noqa: CODE` in the cell")
            continue
        syntax_error = next((d for d in diagnostics if d.code == SYNTAX_ERROR_CODE), None)
        if syntax_error is not None:
            _say("warning", f"{path}: not changed: syntax error at {syntax_error.line}:{syntax_error.column}")
            continue
        try:
            data = read_bytes(path)
            text = decode_source(data)
            changed, count = add_noqa(text, diagnostics)
            if not count:
                continue
            try:
                ast.parse(text)
            except (SyntaxError, ValueError):
                pass  # code for a newer Python than this one: nothing to compare with
            else:
                ast.parse(changed)  # a comment can only break a file if it landed in the wrong place: a bug
            encoded = changed.encode(source_encoding(data))
            with open(path, "wb") as handle:
                handle.write(encoded)
            added += count
        except SourceError as error:
            errors.append(f"{path}: {error}")
        except (SyntaxError, ValueError, UnicodeEncodeError) as error:
            errors.append(
                f"{path}: not changed: adding noqa comments would break it ({type(error).__name__}), please report it"
            )
        except OSError as error:
            errors.append(f"{path}: cannot write: {error.strerror or error}")
    for message in sorted(errors):
        _say("error", message)
    if not quiet:
        click.echo(f"Added {added} noqa directive{'' if added == 1 else 's'}.", err=True)
    sys.exit(EXIT_ERROR if errors else EXIT_CLEAN)


def _with_excludes(config: Config, exclude: tuple[str, ...], extend_exclude: tuple[str, ...]) -> Config:
    """`--exclude` replaces the configured (and default) exclude, `--extend-exclude` adds to the configured one,
    as in ruff; a pattern with a slash is relative to the current directory, like `--per-file-ignores`."""

    def patterns(values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(anchor_pattern(p.strip(), config.root) for value in values for p in value.split(",") if p.strip())

    return config.with_overrides(
        exclude=patterns(exclude) if exclude else None,
        extend_exclude=config.extend_exclude + patterns(extend_exclude) if extend_exclude else None,
    )


def _use_color(mode: str) -> bool:
    """`always` and `never` decide; `auto` colours a terminal unless NO_COLOR is set (https://no-color.org)."""
    if mode != "auto":
        return mode == "always"
    if os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty()


def _write_report(output_file: str, rendered: str) -> None:
    try:
        directory = os.path.dirname(os.path.abspath(output_file))
        os.makedirs(directory, exist_ok=True)
        with open(output_file, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(rendered)
    except OSError as exc:
        _fail(f"{output_file}: cannot write the report: {exc.strerror or exc}")


def _config(config_path, select, extend_select, ignore, per_file_ignores=()) -> Config:
    pyproject = Path(config_path) if config_path else find_pyproject(os.getcwd())
    if config_path and not Path(config_path).is_file():
        raise ConfigError(f"{config_path}: no such file")
    config = load_config(pyproject)
    select = _codes_option(select)
    extra_select = _codes_option(extend_select)
    extra_ignore = _codes_option(ignore)
    config = config.with_overrides(
        select=validate_codes(select, "--select") if select is not None else None,
        extend_select=config.extend_select + validate_codes(extra_select, "--extend-select") if extra_select else None,
        ignore=config.ignore + validate_codes(extra_ignore, "--ignore") if extra_ignore else None,
    )
    if per_file_ignores:
        config = config.with_per_file_ignores(
            parse_per_file_ignores(per_file_ignores, "--per-file-ignores", config.root)
        )
    return config


def _confirm(
    diagnostics, limits, jobs: int, sources: dict[str, str], cache_dir: str | None, progress, announce: bool
) -> dict:
    """Check the interpreter (one error line and exit 2 if it cannot run harnesses), then a verdict per finding.
    With `announce`, one line first says which torch runs the harnesses and under which containment."""
    from .confirm.sandbox import sandbox_description
    from .confirm.session import ConfirmEnvironmentError, check_environment, confirm_diagnostics
    from .confirm.verdict_cache import VerdictCache
    from .confirm.warm_worker import warm_workers

    with warm_workers():  # the preflight starts the worker the harnesses are forked from
        try:
            environment = check_environment(limits)
        except ConfirmEnvironmentError as error:
            _fail(str(error))
        if announce:
            click.echo(f"confirm: {environment.describe()}; sandbox: {sandbox_description()}", err=True)
        cache = VerdictCache(cache_dir, environment.python, environment.torch_version, limits) if cache_dir else None
        return confirm_diagnostics(diagnostics, limits, jobs, sources, progress, cache=cache)


class _ConfirmProgress:
    """Confirm's progress on stderr: a `\r` counter on a terminal; elsewhere (--show-progress) a line at
    the start, at most one every PROGRESS_LINE_SECONDS, and one at the end."""

    PROGRESS_LINE_SECONDS = 10.0

    def __init__(self, terminal: bool, clock=time.monotonic, counted: str = "harnesses run", prefix: str = "confirm"):
        self.terminal = terminal
        self.counted, self.prefix = counted, prefix
        self.clock = clock
        self.started = clock()
        self.last_line: float | None = None

    def __call__(self, done: int, total: int, cached: int) -> None:
        elapsed = self.clock() - self.started
        cached_part = f" ({cached} cached)" if cached else ""
        text = f"{self.prefix}: {done}/{total} {self.counted}{cached_part}, {elapsed:.0f} s"
        if self.terminal:
            click.echo(f"\r{text}", err=True, nl=False)
            if done == total:
                click.echo("\r" + " " * len(text) + "\r", err=True, nl=False)
        elif self.last_line is None or done == total or elapsed - self.last_line >= self.PROGRESS_LINE_SECONDS:
            click.echo(text, err=True)
            self.last_line = elapsed


def _lint_stdin(display_path: str, config: Config, result: LintResult, verbose: bool, sources: dict[str, str]) -> None:
    data = sys.stdin.buffer.read()
    try:
        module = module_source(display_path, data)  # `--stdin-filename x.ipynb` reads a notebook
    except SourceError as error:
        result.errors.append(FileError(display_path, str(error)))
        return
    # Reported files' text for `full` and confirm: a notebook's is its JSON, read again by the same reader.
    raw = data.decode(json.detect_encoding(data), "surrogateescape") if module.notebook is not None else module.text
    sources[display_path] = raw
    module_name = module_name_for_path(display_path) if display_path != "-" else None
    from .engine import lint_module
    from .facts.second_derivatives import SecondDerivativeScope

    second_derivatives = SecondDerivativeScope().covers(display_path, module.text)
    codes = config.codes_for(display_path, second_derivatives)
    result.diagnostics += lint_module(module, display_path, codes, module_name, verbose=verbose)
    result.files_checked += 1


@main.command("audit", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, type=click.Path())
@selection_options
@report_options
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when a gradient is wrong (errors still exit 2).")
@click.option("--show-verdicts", is_flag=True, help="Print every Function's verdict and its reason on stderr.")
@click.option("--show-progress", is_flag=True, help="Print progress on stderr even when it is not a terminal.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="A pyproject.toml to read.")
@click.option(
    "--python", "python_path", type=click.Path(dir_okay=False), help="Interpreter (with torch) that runs harnesses."
)
@click.option("--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True, help="Seconds per Function.")
@harness_memory_option("--memory")
@device_option
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=None, help="Harnesses run in parallel [default: CPUs]."
)
@click.option("--no-cache", is_flag=True, help="Audit every Function again, ignoring and not writing the cache.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help=f"Where verdicts are cached [default: {DEFAULT_CACHE} next to the pyproject.toml, or in the current directory].",
)
def audit(
    paths,
    select,
    extend_select,
    ignore,
    per_file_ignores,
    output_format,
    output_file,
    exit_zero,
    show_verdicts,
    show_progress,
    quiet,
    config_path,
    python_path,
    timeout,
    memory,
    device,
    jobs,
    no_cache,
    cache_dir,
) -> None:
    """Gradcheck every custom Function under torch; a wrong gradient is AGL200.

    Each Function under PATHs (default: the current directory), flagged or not, runs in a contained child
    process on synthesized float64 inputs; its verdict is verified, wrong-gradient, ste (a straight-through
    estimator by design) or inconclusive. Exit 1 when a reported gradient is wrong."""
    try:
        config = _config(config_path, select, extend_select, ignore, per_file_ignores)
    except ConfigError as error:
        _fail(str(error))
    from .confirm.audit import audit_diagnostics, audit_paths, audit_summary
    from .confirm.runner import RunLimits
    from .confirm.session import ConfirmEnvironmentError, check_environment
    from .confirm.verdict_cache import VerdictCache
    from .confirm.warm_worker import warm_workers

    python = os.path.abspath(python_path) if python_path and os.sep in python_path else python_path
    limits = RunLimits(python or sys.executable, timeout, memory, device)
    with warm_workers():  # the preflight starts the worker the audit's harnesses are forked from
        try:
            environment = check_environment(limits)
        except ConfirmEnvironmentError as error:
            _fail(str(error).replace("confirm cannot run", "audit cannot run", 1))
        cache = None
        if not no_cache:
            directory = cache_dir or os.path.join(config.root, DEFAULT_CACHE)
            cache = VerdictCache(directory, environment.python, environment.torch_version, limits)
        terminal = sys.stderr.isatty()
        progress = None
        if show_progress or (terminal and not quiet):
            counter = _ConfirmProgress(terminal, counted="Functions audited", prefix="audit")
            progress = lambda done, total: counter(done, total, 0)  # noqa: E731
        report = audit_paths(list(paths) or ["."], config, limits, jobs or os.cpu_count() or 1, progress, cache)
    for file_error in report.errors:
        _say("error", file_error)
    if show_verdicts:
        for function in report.functions:
            click.echo(
                escape_controls(
                    f"{function.path}:{function.line}:{function.column}: {function.name}: {function.verdict}: {function.detail}"
                ),
                err=True,
            )
    diagnostics = audit_diagnostics(report, config)
    rendered = render(diagnostics, output_format, errors=report.errors, documentation_url=config.documentation_url)
    if output_file:
        _write_report(output_file, rendered)
    else:
        click.echo(rendered, nl=False)
    if not quiet:
        click.echo(audit_summary(report), err=True)
    if report.errors:
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_FINDINGS if diagnostics and not exit_zero else EXIT_CLEAN)


@main.command("clean", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="The cache to remove [default: the one `autograd-lint` uses here].",
)
def clean(cache_dir) -> None:
    """Remove the result cache."""
    import shutil

    if cache_dir is None:
        try:
            pyproject = find_pyproject(os.getcwd())
        except ConfigError as error:
            _fail(str(error))
        cache_dir = os.path.join(str(pyproject.parent) if pyproject else os.getcwd(), DEFAULT_CACHE)
    if os.path.isdir(cache_dir):
        shutil.rmtree(cache_dir, ignore_errors=True)
        click.echo(f"removed {cache_dir}", err=True)


@main.command("rule", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("code", required=False)
@click.option("--all", "show_all", is_flag=True, help="Print every rule's page.")
@click.option("--output-format", type=click.Choice(("text", "json")), default="text", show_default=True)
def rule(code, show_all, output_format) -> None:
    """Explain rule CODE: why it matters, a bad example, the fix, what --confirm runs."""
    if show_all == bool(code):
        _fail("give a rule CODE or --all")
    codes = list(RULES) if show_all else [code.upper()]
    if codes[0] not in RULES and codes[0] not in RESERVED_CODES:
        _fail(f"unknown rule code {code!r} (known: {', '.join([*RULES, *RESERVED_CODES])})")
    if output_format == "json":
        entries = [{"code": c, **_rule_summary(c), "explanation": rule_page(c)} for c in codes]
        click.echo(json.dumps(entries if show_all else entries[0], indent=2))
    else:
        click.echo("\n\n".join(rule_page(c).rstrip() for c in codes))


# Codes that are not rules: reported whatever the selection, never silenced; `rule` explains them too.
RESERVED_CODES = {
    SYNTAX_ERROR_CODE: (
        SYNTAX_ERROR_NAME,
        "the file is not valid Python (or nests too deeply to parse): it was not checked",
    ),
    INTERNAL_ERROR_CODE: (
        INTERNAL_ERROR_NAME,
        "autograd-lint failed on this file (a bug): the file, or one rule on it, was not checked",
    ),
}


def _rule_summary(code: str) -> dict:
    if code in RESERVED_CODES:
        name, summary = RESERVED_CODES[code]
        return {"name": name, "severity": "error", "summary": summary}
    return {"name": RULES[code].name, "severity": RULES[code].severity.value, "summary": RULES[code].summary}
