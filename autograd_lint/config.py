"""`[tool.autograd-lint]` in pyproject.toml, rule selection, excludes and per-file ignores.

Selection follows ruff: codes, code prefixes or `ALL`; `select` replaces the default selection (every
rule but the opt-in ones, `rules.OPT_IN`), `extend-select` adds, `ignore` removes; a command-line
`--select` replaces the configured one.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from typing import Any

from .rules import RULES, SECOND_DERIVATIVE_RULES, default_selection

SECTION = "autograd-lint"
DEFAULT_EXCLUDE = (
    ".git",
    ".hg",
    ".svn",
    ".bzr",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    ".eggs",
    "*.egg-info",
    "build",
    "dist",
    "__pycache__",
    "node_modules",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".autograd_lint_cache",
    "site-packages",
    "__pypackages__",
)
LIST_KEYS = ("select", "ignore", "extend-select", "exclude", "extend-exclude")
BOOL_KEYS = ("respect-gitignore", "force-exclude")
KNOWN_KEYS = LIST_KEYS + BOOL_KEYS + ("per-file-ignores", "documentation-url")


class ConfigError(Exception):
    """A bad configuration value or rule code; the message is one line for the user."""


def validate_codes(codes: tuple[str, ...], where: str) -> tuple[str, ...]:
    """Upper-cased codes; each must be ALL, a rule code or a prefix of one."""
    checked = []
    for raw in codes:
        code = raw.strip().upper()
        if not code:
            continue
        if code != "ALL" and not any(known.startswith(code) for known in RULES):
            raise ConfigError(f"{where}: unknown rule code or prefix {raw!r} (known: {', '.join(RULES)})")
        checked.append(code)
    return tuple(checked)


def _expand(codes: tuple[str, ...]) -> set[str]:
    if "ALL" in codes:
        return set(RULES)
    return {known for known in RULES if any(known.startswith(code) for code in codes)}


def _specificity(code: str) -> int:
    """How specific a selector is (ruff: the longer prefix wins; `ALL` is the least specific)."""
    return -1 if code == "ALL" else len(code)


def _strings(value: object, where: str) -> tuple[str, ...]:
    """A sequence of strings as a tuple. A lone string is read as the command line reads a value, comma-separated:
    `Config(select="AGL001")` means what `--select AGL001` means, not the characters A, G, L..."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ConfigError(f"{where} must be a sequence of strings, got {value!r}")


@dataclass(frozen=True)
class Config:
    select: tuple[str, ...] | None = None
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    extend_exclude: tuple[str, ...] = ()
    per_file_ignores: dict[str, tuple[str, ...]] = field(default_factory=dict)
    respect_gitignore: bool = True  # the directory walk skips what .gitignore files ignore
    force_exclude: bool = False  # exclude also applies to paths named explicitly (pre-commit)
    root: str = field(default_factory=os.getcwd)
    source: str | None = None  # the pyproject.toml it came from
    documentation_url: str | None = None  # a rule page's URL, `{code}`/`{name}` filled in (JSON url, SARIF helpUri)
    # selected_codes' answers (it is asked once per file): the selection with and without second derivatives
    _selections: dict[bool, list[str]] = field(default_factory=dict, init=False, repr=False, compare=False)
    # is_excluded's patterns, compiled on first use
    _exclusions: list[tuple[re.Pattern[str] | None, list[str]]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Validated like the command line and the pyproject table, with the same one-line errors, so that
        # `Config(select=("AGL5",))` fails instead of silently selecting nothing.
        normalized: dict[str, object] = {
            "select": validate_codes(_strings(self.select, "Config.select"), "Config.select")
            if self.select is not None
            else None,
            "extend_select": validate_codes(
                _strings(self.extend_select, "Config.extend_select"), "Config.extend_select"
            ),
            "ignore": validate_codes(_strings(self.ignore, "Config.ignore"), "Config.ignore"),
            "exclude": _strings(self.exclude, "Config.exclude"),
            "extend_exclude": _strings(self.extend_exclude, "Config.extend_exclude"),
        }
        if not isinstance(self.per_file_ignores, dict) or not all(
            isinstance(key, str) for key in self.per_file_ignores
        ):
            raise ConfigError(f"Config.per_file_ignores must be a dict of glob: codes, got {self.per_file_ignores!r}")
        normalized["per_file_ignores"] = {
            pattern: validate_codes(
                _strings(codes, f"Config.per_file_ignores[{pattern!r}]"), f"Config.per_file_ignores[{pattern!r}]"
            )
            for pattern, codes in self.per_file_ignores.items()
        }
        for name in ("respect_gitignore", "force_exclude"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"Config.{name} must be True or False, got {getattr(self, name)!r}")
        for name, value in normalized.items():
            object.__setattr__(self, name, value)

    def selected_codes(self, second_derivatives: bool = False) -> list[str]:
        """The codes to run. `second_derivatives`: the module's package takes second derivatives, so
        the default selection also runs the rules that matter only there (`SECOND_DERIVATIVE_RULES`).

        As in ruff, where a selector and an ignore both match a rule the more specific one wins
        (`--select AGL001 --ignore AGL00` keeps AGL001); at equal specificity the ignore wins.
        """
        if second_derivatives not in self._selections:
            self._selections[second_derivatives] = self._selection(second_derivatives)
        return list(self._selections[second_derivatives])

    def _selection(self, second_derivatives: bool) -> list[str]:
        base = set(default_selection()) if self.select is None else set()
        if self.select is None and second_derivatives:
            base |= SECOND_DERIVATIVE_RULES
        selectors = (self.select or ()) + self.extend_select
        chosen = set()
        for code in RULES:
            selected = max((_specificity(s) for s in selectors if s == "ALL" or code.startswith(s)), default=None)
            if selected is None and code in base:
                selected = -2  # the default selection is less specific than any selector
            ignored = max((_specificity(s) for s in self.ignore if s == "ALL" or code.startswith(s)), default=None)
            if selected is not None and (ignored is None or selected > ignored):
                chosen.add(code)
        return sorted(chosen)

    def codes_for(self, path: str, second_derivatives: bool = False) -> list[str]:
        """Selected codes minus the per-file ignores that match `path`."""
        ignored: set[str] = set()
        relative = _relative(path, self.root)
        for pattern, codes in self.per_file_ignores.items():
            if path_matches(relative, pattern):
                ignored |= _expand(codes)
        return [code for code in self.selected_codes(second_derivatives) if code not in ignored]

    def is_excluded(self, path: str) -> bool:
        """Whether the walk skips `path`: a slash-free pattern matches its name, others its relative path.

        Only the entries a directory walk meets are tested, so the directories above a path given on
        the command line never exclude it (linting `venv/lib/site-packages/torch` works).
        """
        by_name, by_path = self._exclusion_patterns()
        if by_name is not None and by_name.match(os.path.normcase(os.path.basename(os.path.normpath(path)))):
            return True
        if by_path:
            relative = _relative(path, self.root)
            return any(fnmatch.fnmatch(relative, pattern) for pattern in by_path)
        return False

    def _exclusion_patterns(self) -> tuple[re.Pattern[str] | None, list[str]]:
        """The slash-free patterns as one expression (as `fnmatch` matches them), and the others: the walk asks of
        every directory and file it meets (one `fnmatch` per pattern was half the walk over torch's source)."""
        if not self._exclusions:
            patterns = [pattern.rstrip("/") for pattern in self.exclude + self.extend_exclude]
            names = [fnmatch.translate(os.path.normcase(pattern)) for pattern in patterns if "/" not in pattern]
            self._exclusions.append(
                (re.compile("|".join(names)) if names else None, [pattern for pattern in patterns if "/" in pattern])
            )
        return self._exclusions[0]

    def is_force_excluded(self, path: str) -> bool:
        """Whether `path` or a directory above it (up to the root) is excluded, or is a virtual environment.

        What `--force-exclude` asks: a path named explicitly is skipped as if the walk had met it.
        """
        absolute = os.path.abspath(path)
        try:
            relative = os.path.relpath(absolute, self.root)
        except ValueError:  # another drive on Windows
            relative = os.pardir
        if relative == os.curdir:
            return False
        if relative.startswith(os.pardir):  # outside the project: only its own name can match
            return self.is_excluded(absolute)
        parts = Path(relative).parts
        for depth in range(1, len(parts) + 1):
            candidate = os.path.join(self.root, *parts[:depth])
            if self.is_excluded(candidate):
                return True
            if depth < len(parts) and os.path.isfile(os.path.join(candidate, "pyvenv.cfg")):
                return True
        return False

    def with_per_file_ignores(self, extra: dict[str, tuple[str, ...]]) -> Config:
        """This config with `extra` patterns merged in: codes for a pattern already configured are added."""
        merged = dict(self.per_file_ignores)
        for pattern, codes in extra.items():
            merged[pattern] = tuple(dict.fromkeys(merged.get(pattern, ()) + codes))
        return replace(self, per_file_ignores=merged)

    def with_overrides(self, **overrides) -> Config:
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})


def _relative(path: str, root: str) -> str:
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute, root)
    except ValueError:
        return Path(absolute).as_posix()
    return Path(absolute if relative.startswith("..") else relative).as_posix()


def path_matches(relative: str, pattern: str) -> bool:
    """A glob against the whole relative path, or (without a slash) against any one component."""
    pattern = pattern.rstrip("/")
    if "/" in pattern:
        return fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(relative, pattern + "/*")
    return any(fnmatch.fnmatch(part, pattern) for part in relative.split("/"))


def find_pyproject(start: str) -> Path | None:
    """The nearest pyproject.toml at or above `start` that has a [tool.autograd-lint] table."""
    directory = Path(start).resolve()
    for candidate_dir in (directory, *directory.parents):
        candidate = candidate_dir / "pyproject.toml"
        if candidate.is_file():
            tool = _read_toml(candidate).get("tool")
            if isinstance(tool, dict) and SECTION in tool:  # `tool = 5` is someone else's odd file, not ours
                return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            # annotated: mypy checks the 3.10 branch, whose tomli may not be installed
            table: dict[str, Any] = tomllib.load(handle)
            return table
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def load_config(path: Path | None) -> Config:
    """The Config from `path`'s [tool.autograd-lint] table (defaults when `path` is None)."""
    if path is None:
        return Config()
    tool = _read_toml(path).get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(f"{path}: [tool] must be a table")
    table = tool.get(SECTION, {})
    where = f"{path}: [tool.{SECTION}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - set(KNOWN_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(KNOWN_KEYS)})")
    values: dict = {}
    for key in LIST_KEYS:
        if key in table:
            values[key] = _string_list(table[key], f"{where}.{key}")
    for key in BOOL_KEYS:
        if key in table and not isinstance(table[key], bool):
            raise ConfigError(f"{where}.{key} must be true or false, got {table[key]!r}")
    per_file: dict[str, tuple[str, ...]] = {}
    raw_per_file = table.get("per-file-ignores", {})
    if not isinstance(raw_per_file, dict):
        raise ConfigError(f"{where}.per-file-ignores must be a table of glob = [codes]")
    for pattern, codes in raw_per_file.items():
        per_file[pattern] = validate_codes(_string_list(codes, f"{where}.per-file-ignores.{pattern}"), where)
    documentation_url = table.get("documentation-url")
    if documentation_url is not None:
        validate_documentation_url(documentation_url, f"{where}.documentation-url")
    return Config(
        select=validate_codes(values["select"], where) if "select" in values else None,
        extend_select=validate_codes(values.get("extend-select", ()), where),
        ignore=validate_codes(values.get("ignore", ()), where),
        exclude=values.get("exclude", DEFAULT_EXCLUDE),
        extend_exclude=values.get("extend-exclude", ()),
        per_file_ignores=per_file,
        respect_gitignore=table.get("respect-gitignore", True),
        force_exclude=table.get("force-exclude", False),
        root=str(path.parent),
        source=str(path),
        documentation_url=documentation_url,
    )


def validate_documentation_url(value, where: str) -> None:
    """A URL template naming the rule: the same link for every rule would be no link at all."""
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    try:
        filled = value.format(code="AGL001", name="shared-state-in-backward")
    except (AttributeError, KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{where}: only {{code}} and {{name}} can be filled in, got {value!r} ({exc})") from None
    if filled == value:
        raise ConfigError(f"{where} must contain {{code}} or {{name}}, got {value!r}")


def parse_per_file_ignores(
    entries: tuple[str, ...], where: str, root: str, cwd: str | None = None
) -> dict[str, tuple[str, ...]]:
    """`GLOB:CODE,CODE` entries (the command line's --per-file-ignores) as a per-file-ignores table.

    A pattern with a slash is relative to the current directory, as a shell user means it; it is
    re-anchored at `root`, where the configured patterns are matched.
    """
    cwd = cwd or os.getcwd()
    table: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        pattern, separator, codes = entry.rpartition(":")
        pattern = pattern.strip()
        if not separator or not pattern or not codes.strip():
            raise ConfigError(f"{where}: expected GLOB:CODE[,CODE...], got {entry!r}")
        pattern = anchor_pattern(pattern, root, cwd)
        checked = validate_codes(tuple(codes.split(",")), where)
        if not checked:
            raise ConfigError(f"{where}: expected GLOB:CODE[,CODE...], got {entry!r}")
        table[pattern] = tuple(dict.fromkeys(table.get(pattern, ()) + checked))
    return table


def anchor_pattern(pattern: str, root: str, cwd: str | None = None) -> str:
    """A command-line glob with a slash, meant relative to the current directory as a shell user means it,
    re-anchored at `root`, where configured patterns are matched. Slash-free patterns match any name."""
    if "/" in pattern.rstrip("/") and not os.path.isabs(pattern):
        prefix = os.path.relpath(cwd or os.getcwd(), root)
        if prefix != os.curdir and not prefix.startswith(os.pardir):
            return f"{Path(prefix).as_posix()}/{pattern}"
    return pattern


def _string_list(value, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where} must be a list of strings, got {value!r}")
    return tuple(value)
