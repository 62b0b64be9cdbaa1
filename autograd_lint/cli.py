"""The `autograd-lint` command line (click), a thin layer over the library API.

Exit codes follow ruff: 0 no findings, 1 findings, 2 usage, configuration, file or internal error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .version import __version__
from .api import LintResult, lint_paths
from .cache import DEFAULT_DIRECTORY as DEFAULT_CACHE
from .config import Config, ConfigError, find_pyproject, load_config, parse_per_file_ignores, validate_codes
from .diagnostic import INTERNAL_ERROR_CODE, FileError
from .discovery import discover
from .formats import Sources
from .module_names import module_name_for_path
from .output import FORMATS, HUMAN_FORMATS, STATISTICS_FORMATS, render, render_statistics, summary
from .pages import rule_page
from .reading import SourceError, decode_source
from .rules import RULES

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT


class _LinterGroup(click.Group):
    """`autograd-lint [OPTIONS] [PATH]...` lints; `autograd-lint rule CODE` is the one subcommand."""

    def parse_args(self, ctx, args):
        if not args or args[0] not in self.commands:
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


def _fail(message: str) -> None:
    click.echo(f"autograd-lint: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


@click.group(cls=_LinterGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """autograd-lint: find silent gradient bugs in custom torch.autograd.Function code."""


@main.command("check", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--select", multiple=True, help="Rule codes or prefixes to enable, comma-separated (replaces the configured selection; ALL for every rule).")
@click.option("--extend-select", multiple=True, help="Rule codes or prefixes to enable on top of the selection.")
@click.option("--ignore", multiple=True, help="Rule codes or prefixes to disable.")
@click.option("--per-file-ignores", multiple=True, metavar="GLOB:CODES", help="Disable CODES (comma-separated) in files matching GLOB; repeatable, added to the configured per-file-ignores.")
@click.option("--output-format", type=click.Choice(FORMATS), default="text", show_default=True, help="How to print diagnostics: text (concise), full (with the source), json, json-lines, sarif, github (workflow annotations), gitlab (code quality).")
@click.option("-o", "--output-file", type=click.Path(dir_okay=False, writable=True), help="Write the report to this file instead of stdout (the summary stays on stderr).")
@click.option("--color", "color_mode", type=click.Choice(("auto", "always", "never")), default="auto", show_default=True, help="Colour text and full output: auto colours only on a terminal and never with NO_COLOR set.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when there are findings (errors still exit 2).")
@click.option("--statistics", is_flag=True, help="Print the number of findings per rule instead of each finding.")
@click.option("--show-files", is_flag=True, help="Print the files that would be linted, one a line, and exit.")
@click.option("--force-exclude/--no-force-exclude", default=None, help="Apply exclude to paths named on the command line too (pre-commit names every file).")
@click.option("--respect-gitignore/--no-respect-gitignore", default=None, help="Skip files that .gitignore files ignore when walking directories [default: respect].")
@click.option("-q", "--quiet", is_flag=True, help="Print findings only, no summary.")
@click.option("--stdin-filename", help="The path to report, and to match config against, when linting `-` (stdin).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="A pyproject.toml to read [tool.autograd-lint] from (default: the nearest one).")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks of internal errors.")
@click.option("--confirm", is_flag=True, help="Run each finding under torch in a contained child process and report whether its gradients prove the bug.")
@click.option("--confirmed-only", is_flag=True, help="Report only findings that --confirm proved (implies --confirm).")
@click.option("--python", "python_path", type=click.Path(dir_okay=False), help="Interpreter (with torch) that runs confirm harnesses [default: this one].")
@click.option("--confirm-timeout", type=click.FloatRange(min=1), default=20.0, show_default=True, help="Seconds one harness may run before it is killed.")
@click.option("--confirm-memory", type=click.IntRange(min=256), default=4096, show_default=True, help="Address-space limit of one harness, in MB.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Files linted (and harnesses run) in parallel [default: the number of CPUs].")
@click.option("--no-cache", is_flag=True, help="Lint every file again, ignoring and not writing the result cache.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help=f"Where results are cached [default: {DEFAULT_CACHE} next to the pyproject.toml, or in the current directory].")
@click.version_option(__version__, "--version", prog_name="autograd-lint")
def check(paths, select, extend_select, ignore, per_file_ignores, output_format, output_file, color_mode, exit_zero, statistics,
          show_files, force_exclude, respect_gitignore, quiet, stdin_filename, config_path, verbose,
          confirm, confirmed_only, python_path, confirm_timeout, confirm_memory, jobs, no_cache, cache_dir) -> None:
    """Lint PATHs (default: the current directory). `-` reads a module from stdin."""
    if statistics and output_format not in STATISTICS_FORMATS:
        _fail(f"--statistics prints text or JSON, not {output_format} (use --output-format {', '.join(STATISTICS_FORMATS)})")
    try:
        config = _config(config_path, select, extend_select, ignore, per_file_ignores)
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
    result = LintResult()
    stdin_sources: dict[str, str] = {}
    if read_stdin:
        _lint_stdin(stdin_path, config, result, verbose, stdin_sources)
    if paths:
        cache = None if no_cache else (cache_dir or os.path.join(config.root, DEFAULT_CACHE))
        found = lint_paths(paths, config, verbose=verbose, jobs=jobs or os.cpu_count() or 1, cache_dir=cache)
        result.diagnostics = sorted(result.diagnostics + found.diagnostics, key=lambda d: d.sort_key())
        result.errors += found.errors
        result.files_checked += found.files_checked
    for error in result.errors:
        click.echo(f"autograd-lint: error: {error}", err=True)
    verdicts = {}
    if confirm or confirmed_only:
        from .confirm.runner import RunLimits  # torch-side machinery, loaded only when asked for
        from .confirm.session import confirm_diagnostics

        limits = RunLimits(python_path or sys.executable, confirm_timeout, confirm_memory)
        verdicts = confirm_diagnostics(
            result.diagnostics, limits, jobs or os.cpu_count() or 1, stdin_sources, _progress_bar() if not quiet else None
        )
        if confirmed_only:
            result.diagnostics = [d for d in result.diagnostics if d in verdicts and verdicts[d].verdict == "confirmed"]
    color = not output_file and output_format in HUMAN_FORMATS and _use_color(color_mode)
    if statistics:
        rendered = render_statistics(result.diagnostics, output_format)
    else:
        rendered = render(
            result.diagnostics, output_format, verdicts, errors=result.errors, sources=Sources(stdin_sources), color=color,
            documentation_url=config.documentation_url,
        )
    if output_file:
        _write_report(output_file, rendered)
    else:
        click.echo(rendered, nl=False, color=color)
    if not quiet and (output_format in HUMAN_FORMATS or output_file):
        click.echo(summary(result.diagnostics, result.files_checked, len(result.errors)), err=True)
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
        click.echo(f"autograd-lint: error: {error}", err=True)
    for file in files:
        click.echo(file)
    sys.exit(EXIT_ERROR if errors else EXIT_CLEAN)


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
    if config_path and not pyproject.is_file():
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
        config = config.with_per_file_ignores(parse_per_file_ignores(per_file_ignores, "--per-file-ignores", config.root))
    return config


def _progress_bar():
    """A one-line counter on stderr while harnesses run, only on a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        click.echo(f"\rconfirming findings under torch: {done}/{total}", err=True, nl=False)
        if end:
            click.echo("\r" + " " * 50 + "\r", err=True, nl=False)

    return show


def _lint_stdin(display_path: str, config: Config, result: LintResult, verbose: bool, sources: dict[str, str]) -> None:
    try:
        text = decode_source(sys.stdin.buffer.read())
    except SourceError as error:
        result.errors.append(FileError(display_path, str(error)))
        return
    sources[display_path] = text
    module_name = module_name_for_path(display_path) if display_path != "-" else None
    from .engine import lint_text

    from .second_derivatives import SecondDerivativeScope

    second_derivatives = SecondDerivativeScope().covers(display_path, text)
    result.diagnostics += lint_text(text, display_path, config.codes_for(display_path, second_derivatives), module_name, verbose=verbose)
    result.files_checked += 1


@main.command("clean", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="The cache to remove [default: the one `autograd-lint` uses here].")
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
    if codes[0] not in RULES:
        _fail(f"unknown rule code {code!r} (known: {', '.join(RULES)})")
    if output_format == "json":
        entries = [
            {"code": c, "name": RULES[c].name, "severity": RULES[c].severity.value, "summary": RULES[c].summary, "explanation": rule_page(c)}
            for c in codes
        ]
        click.echo(json.dumps(entries if show_all else entries[0], indent=2))
    else:
        click.echo("\n\n".join(rule_page(c).rstrip() for c in codes))
