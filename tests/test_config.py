"""`[tool.autograd-lint]` in pyproject.toml: discovery, selection, excludes, per-file ignores, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from snippets import SNIPPET

from autograd_lint import Config, ConfigError, lint_paths, load_config
from autograd_lint.cli import main

OTHER = "AGL003"  # a registered rule that does not fire on SNIPPET


def invoke(args, input=None):
    return CliRunner().invoke(main, args, input=input)


def reported(stdout: str) -> list[tuple[str, int, int, str]]:
    """(normalised path, line, column, code) of each text-format diagnostic line."""
    found = []
    for line in stdout.splitlines():
        location, _, rest = line.partition(": ")
        path, line_no, column = location.rsplit(":", 2)
        found.append((Path(os.path.normpath(path)).as_posix(), int(line_no), int(column), rest.split(" ", 1)[0]))
    return found


def write_config(directory: Path, body: str) -> Path:
    path = directory / "pyproject.toml"
    path.write_text("[project]\nname = 'demo'\n\n[tool.autograd-lint]\n" + body)
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project with the buggy snippet in several places; cwd is its root."""
    for relative in ("a.py", "src/model.py", "src/gen/generated.py", "tests/test_model.py", "build/out.py"):
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(SNIPPET)
    monkeypatch.chdir(tmp_path)
    return tmp_path


ALL_BUT_BUILD = ["a.py", "src/gen/generated.py", "src/model.py", "tests/test_model.py"]


def paths_of(result) -> list[str]:
    return [path for path, *_ in reported(result.stdout)]


def test_no_config_lints_everything_but_default_excludes(project):
    result = invoke(["-q", "."])
    assert result.exit_code == 1
    assert paths_of(result) == ALL_BUT_BUILD
    assert {(line, column, code) for _, line, column, code in reported(result.stdout)} == {(11, 9, "AGL002")}


# --- selection -------------------------------------------------------------------------------------


def test_config_select(project):
    write_config(project, f'select = ["{OTHER}"]\n')
    result = invoke(["-q", "a.py"])
    assert result.exit_code == 0
    assert result.stdout == ""


def test_config_select_prefix(project):
    write_config(project, 'select = ["AGL00"]\n')
    result = invoke(["-q", "a.py"])
    assert result.exit_code == 1
    assert reported(result.stdout) == [("a.py", 11, 9, "AGL002")]


def test_config_ignore(project):
    write_config(project, 'ignore = ["AGL002"]\n')
    result = invoke(["-q", "a.py"])
    assert result.exit_code == 0
    assert result.stdout == ""


def test_config_ignore_prefix_with_select_all(project):
    write_config(project, 'select = ["ALL"]\nignore = ["AGL0"]\n')
    result = invoke(["-q", "a.py"])
    assert result.exit_code == 0
    assert result.stdout == ""


def test_config_extend_select(project):
    write_config(project, f'select = ["{OTHER}"]\nextend-select = ["AGL002"]\n')
    result = invoke(["-q", "a.py"])
    assert result.exit_code == 1
    assert reported(result.stdout) == [("a.py", 11, 9, "AGL002")]


def test_cli_select_overrides_config_select(project):
    write_config(project, f'select = ["{OTHER}"]\n')
    result = invoke(["-q", "--select", "AGL002", "a.py"])
    assert result.exit_code == 1
    assert reported(result.stdout) == [("a.py", 11, 9, "AGL002")]


def test_cli_select_replaces_config_select_rather_than_adding(project):
    write_config(project, 'select = ["AGL002"]\n')
    result = invoke(["-q", "--select", OTHER, "a.py"])
    assert result.exit_code == 0
    assert result.stdout == ""


def test_cli_extend_select_adds_to_config_select(project):
    write_config(project, f'select = ["{OTHER}"]\n')
    result = invoke(["-q", "--extend-select", "AGL002", "a.py"])
    assert result.exit_code == 1
    assert reported(result.stdout) == [("a.py", 11, 9, "AGL002")]


def test_cli_ignore_adds_to_config_ignore(project):
    write_config(project, 'ignore = ["AGL002"]\n')
    result = invoke(["-q", "--ignore", OTHER, "a.py"])
    assert result.exit_code == 0
    assert result.stdout == ""


def test_cli_ignore_on_top_of_config(project):
    write_config(project, 'select = ["AGL002"]\n')
    result = invoke(["-q", "--ignore", "AGL002", "a.py"])
    assert result.exit_code == 0
    assert result.stdout == ""


# --- exclude -------------------------------------------------------------------------------------


def test_exclude_replaces_the_default_excludes(project):
    write_config(project, 'exclude = ["gen"]\n')
    result = invoke(["-q", "."])
    assert result.exit_code == 1
    # `build` is walked again: `exclude` replaces the defaults, as in ruff.
    assert paths_of(result) == ["a.py", "build/out.py", "src/model.py", "tests/test_model.py"]


def test_extend_exclude_keeps_the_default_excludes(project):
    write_config(project, 'extend-exclude = ["gen"]\n')
    result = invoke(["-q", "."])
    assert result.exit_code == 1
    assert paths_of(result) == ["a.py", "src/model.py", "tests/test_model.py"]


def test_extend_exclude_file_glob(project):
    write_config(project, 'extend-exclude = ["test_*.py"]\n')
    result = invoke(["-q", "."])
    assert paths_of(result) == ["a.py", "src/gen/generated.py", "src/model.py"]


def test_exclude_pattern_with_slash_is_relative_to_the_config_directory(project, monkeypatch):
    write_config(project, 'extend-exclude = ["src/gen"]\n')
    monkeypatch.chdir(project / "src")
    result = invoke(["-q", "."])
    assert result.exit_code == 1
    assert paths_of(result) == ["model.py"]


def test_excluded_file_named_explicitly_is_still_linted(project):
    write_config(project, 'extend-exclude = ["gen", "generated.py", "a.py"]\n')
    walked = invoke(["-q", "."])
    assert paths_of(walked) == ["src/model.py", "tests/test_model.py"]
    result = invoke(["-q", "src/gen/generated.py", "a.py"])
    assert result.exit_code == 1
    assert reported(result.stdout) == [("a.py", 11, 9, "AGL002"), ("src/gen/generated.py", 11, 9, "AGL002")]


# --- per-file-ignores ------------------------------------------------------------------------------


def test_per_file_ignores_glob(project):
    write_config(project, '[tool.autograd-lint.per-file-ignores]\n"tests/*" = ["AGL002"]\n')
    result = invoke(["-q", "."])
    assert result.exit_code == 1
    assert paths_of(result) == ["a.py", "src/gen/generated.py", "src/model.py"]


def test_per_file_ignores_inline_table_and_prefix(project):
    write_config(project, 'per-file-ignores = { "src/**" = ["AGL00"], "a.py" = ["AGL002"] }\n')
    result = invoke(["-q", "."])
    assert paths_of(result) == ["tests/test_model.py"]


def test_per_file_ignores_slash_free_pattern_matches_any_component(project):
    write_config(project, '[tool.autograd-lint.per-file-ignores]\n"test_*.py" = ["AGL002"]\n"gen" = ["AGL002"]\n')
    result = invoke(["-q", "."])
    assert paths_of(result) == ["a.py", "src/model.py"]


def test_per_file_ignores_other_code_does_not_suppress(project):
    write_config(project, f'[tool.autograd-lint.per-file-ignores]\n"a.py" = ["{OTHER}"]\n')
    result = invoke(["-q", "a.py"])
    assert result.exit_code == 1
    assert reported(result.stdout) == [("a.py", 11, 9, "AGL002")]


def test_per_file_ignores_are_relative_to_the_config_directory(project, monkeypatch):
    write_config(project, '[tool.autograd-lint.per-file-ignores]\n"tests/*" = ["AGL002"]\n')
    monkeypatch.chdir(project / "tests")
    result = invoke(["-q", "."])
    assert result.exit_code == 0
    assert result.stdout == ""
    monkeypatch.chdir(project / "src")
    result = invoke(["-q", "../tests/test_model.py", "model.py"])
    assert reported(result.stdout) == [("model.py", 11, 9, "AGL002")]


def test_per_file_ignores_apply_to_stdin_filename(project):
    write_config(project, '[tool.autograd-lint.per-file-ignores]\n"tests/*" = ["AGL002"]\n')
    ignored = invoke(["-q", "-", "--stdin-filename", "tests/test_new.py"], input=SNIPPET)
    assert ignored.exit_code == 0
    assert ignored.stdout == ""
    kept = invoke(["-q", "-", "--stdin-filename", "src/new.py"], input=SNIPPET)
    assert kept.exit_code == 1
    assert reported(kept.stdout) == [("src/new.py", 11, 9, "AGL002")]


# --- discovery -----------------------------------------------------------------------------------


def test_config_is_found_from_cwd_upward(project, monkeypatch):
    write_config(project, 'ignore = ["AGL002"]\n')
    monkeypatch.chdir(project / "src" / "gen")
    result = invoke(["-q", "generated.py"])
    assert result.exit_code == 0
    assert result.stdout == ""


def test_pyproject_without_the_section_is_skipped(project, monkeypatch):
    write_config(project, 'ignore = ["AGL002"]\n')
    (project / "src" / "pyproject.toml").write_text("[project]\nname = 'inner'\n[tool.black]\nline-length = 99\n")
    monkeypatch.chdir(project / "src")
    result = invoke(["-q", "model.py"])
    assert result.exit_code == 0
    assert result.stdout == ""


def test_nearest_config_wins_without_merging(project, monkeypatch):
    write_config(project, 'ignore = ["AGL002"]\n')
    write_config(project / "src", 'select = ["AGL002"]\n')
    monkeypatch.chdir(project / "src")
    result = invoke(["-q", "model.py"])
    assert result.exit_code == 1
    assert reported(result.stdout) == [("model.py", 11, 9, "AGL002")]


def test_config_option_uses_the_given_file(project, tmp_path_factory):
    write_config(project, 'select = ["AGL002"]\n')
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    config = write_config(elsewhere, 'ignore = ["AGL002"]\n')
    result = invoke(["-q", "--config", str(config), "a.py"])
    assert result.exit_code == 0
    assert result.stdout == ""
    without = invoke(["-q", "a.py"])
    assert without.exit_code == 1


def test_config_option_relative_path(project):
    (project / "cfg").mkdir()
    write_config(project / "cfg", 'ignore = ["AGL002"]\n')
    result = invoke(["-q", "--config", "cfg/pyproject.toml", "a.py"])
    assert result.exit_code == 0
    assert result.stdout == ""


def test_config_option_missing_file_exits_2(project):
    result = invoke(["-q", "--config", "nope/pyproject.toml", "a.py"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["autograd-lint: error: nope/pyproject.toml: no such file"]


def test_config_option_file_without_section_uses_defaults(project):
    (project / "plain.toml").write_text("[tool.black]\nline-length = 88\n")
    write_config(project, 'ignore = ["AGL002"]\n')
    result = invoke(["-q", "--config", "plain.toml", "a.py"])
    assert result.exit_code == 1
    assert reported(result.stdout) == [("a.py", 11, 9, "AGL002")]


# --- errors --------------------------------------------------------------------------------------


def one_line_error(result) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("autograd-lint: error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def test_unknown_key_exits_2_naming_the_key(project):
    write_config(project, 'select = ["AGL002"]\nline-length = 100\n')
    message = one_line_error(invoke(["a.py"]))
    assert "unknown key 'line-length'" in message
    assert "pyproject.toml" in message


def test_misspelled_key_exits_2(project):
    write_config(project, "per_file_ignores = {}\n")
    assert "'per_file_ignores'" in one_line_error(invoke(["a.py"]))


@pytest.mark.parametrize(
    "body, key",
    [
        ('select = "AGL002"\n', "select"),
        ("ignore = 2\n", "ignore"),
        ('extend-select = ["AGL002", 3]\n', "extend-select"),
        ('exclude = "build"\n', "exclude"),
        ("extend-exclude = true\n", "extend-exclude"),
        ('per-file-ignores = ["tests/*"]\n', "per-file-ignores"),
        ('per-file-ignores = { "tests/*" = "AGL002" }\n', "per-file-ignores"),
    ],
)
def test_wrong_type_exits_2(project, body, key):
    message = one_line_error(_with_config(project, body))
    assert key in message


def _with_config(project, body):
    write_config(project, body)
    return invoke(["a.py"])


def test_wrong_type_message_names_the_expected_type(project):
    message = one_line_error(_with_config(project, 'select = "AGL002"\n'))
    assert "select must be a list of strings" in message
    assert "'AGL002'" in message


def test_section_that_is_not_a_table_exits_2(project):
    (project / "pyproject.toml").write_text('[tool]\nautograd-lint = "strict"\n')
    assert "must be a table" in one_line_error(invoke(["a.py"]))


def test_invalid_toml_exits_2(project):
    (project / "pyproject.toml").write_text('[tool.autograd-lint]\nselect = ["AGL002"\n')
    message = one_line_error(invoke(["a.py"]))
    assert "invalid TOML" in message
    assert "pyproject.toml" in message


def test_invalid_toml_via_config_option_exits_2(project):
    (project / "broken.toml").write_text("[tool.autograd-lint\n")
    message = one_line_error(invoke(["--config", "broken.toml", "a.py"]))
    assert "broken.toml" in message and "invalid TOML" in message


@pytest.mark.parametrize(
    "body",
    [
        'select = ["AGL002", "AGL9"]\n',
        'ignore = ["AGL9"]\n',
        'extend-select = ["AGL9"]\n',
        '[tool.autograd-lint.per-file-ignores]\n"tests/*" = ["AGL9"]\n',
    ],
)
def test_unknown_code_in_config_exits_2(project, body):
    message = one_line_error(_with_config(project, body))
    assert "unknown rule code or prefix 'AGL9'" in message


def test_config_error_wins_over_linting(project):
    write_config(project, "bogus = 1\n")
    result = invoke(["--exit-zero", "a.py"])
    assert result.exit_code == 2
    assert "AGL002" not in result.stdout


# --- the library side ------------------------------------------------------------------------------


def test_load_config_values(project):
    path = write_config(
        project,
        'select = ["agl00"]\nignore = ["AGL003"]\nextend-exclude = ["gen"]\n'
        '[tool.autograd-lint.per-file-ignores]\n"tests/*" = ["AGL002"]\n',
    )
    config = load_config(path)
    assert config.select == ("AGL00",)
    assert config.ignore == ("AGL003",)
    assert config.extend_exclude == ("gen",)
    assert config.per_file_ignores == {"tests/*": ("AGL002",)}
    assert config.root == str(project)
    assert "AGL002" in config.selected_codes()
    assert "AGL003" not in config.selected_codes()
    assert "AGL002" not in config.codes_for(str(project / "tests" / "test_model.py"))
    assert "AGL002" in config.codes_for(str(project / "src" / "model.py"))


def test_load_config_error_is_config_error(project):
    path = write_config(project, "bogus = 1\n")
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        load_config(path)


def test_lint_paths_honours_config(project):
    config = load_config(
        write_config(
            project, 'extend-exclude = ["gen"]\n[tool.autograd-lint.per-file-ignores]\n"tests/*" = ["AGL002"]\n'
        )
    )
    result = lint_paths(["."], config)
    assert [(os.path.normpath(d.path), d.line, d.column, d.code) for d in result.diagnostics] == [
        ("a.py", 11, 9, "AGL002"),
        (os.path.join("src", "model.py"), 11, 9, "AGL002"),
    ]
    assert result.files_checked == 3
    assert result.errors == []


def test_default_config_selects_every_rule_but_the_opt_in_ones():
    from autograd_lint.rules import OPT_IN, RULES

    default = [c for c in sorted(RULES) if c not in OPT_IN]
    assert Config().selected_codes() == default
    assert Config(ignore=("AGL002",)).selected_codes() == [c for c in default if c != "AGL002"]
    assert Config(select=("ALL",)).selected_codes() == sorted(RULES)


# --- ruff's selector precedence --------------------------------------------------------------------


def test_more_specific_select_wins_over_a_prefix_ignore(project):
    # ruff: `--select F401 --ignore F4` keeps F401; the longer selector decides.
    result = invoke(["-q", "--select", "AGL002", "--ignore", "AGL00", "a.py"])
    assert result.exit_code == 1
    assert reported(result.stdout) == [("a.py", 11, 9, "AGL002")]


def test_more_specific_ignore_wins_over_a_prefix_select(project):
    result = invoke(["-q", "--select", "AGL00", "--ignore", "AGL002", "a.py"])
    assert result.exit_code == 0
    assert result.stdout == ""


@pytest.mark.parametrize(
    "config, expected",
    [
        (Config(select=("AGL001",), ignore=("AGL00",)), ["AGL001"]),
        (Config(select=("AGL00",), ignore=("AGL001",)), [f"AGL00{n}" for n in range(2, 10)]),
        (Config(select=("AGL002",), ignore=("AGL002",)), []),  # equal specificity: the ignore wins
        (Config(select=("ALL",), ignore=("ALL",)), []),
        # an extend-select beats a shorter ignore; AGL200 (the audit's, default-selected) is outside AGL0
        (Config(extend_select=("AGL007",), ignore=("AGL0",)), ["AGL007", "AGL200"]),
        (
            Config(ignore=("AGL0",), extend_select=("AGL",)),
            ["AGL100", "AGL101", "AGL200"],
        ),  # a longer ignore beats a shorter selector
    ],
)
def test_selector_specificity(config, expected):
    assert config.selected_codes() == expected


# --- the Config object validates like the command line ---------------------------------------------


@pytest.mark.parametrize(
    "field, where",
    [("select", "Config.select"), ("extend_select", "Config.extend_select"), ("ignore", "Config.ignore")],
)
def test_config_rejects_an_unknown_code_with_the_cli_message(field, where):
    from autograd_lint.rules import RULES

    with pytest.raises(ConfigError) as raised:
        Config(**{field: ("AGL5",)})
    assert str(raised.value) == f"{where}: unknown rule code or prefix 'AGL5' (known: {', '.join(RULES)})"


def test_config_rejects_an_unknown_code_in_per_file_ignores():
    with pytest.raises(
        ConfigError, match=r"^Config.per_file_ignores\['tests/\*'\]: unknown rule code or prefix 'XYZ1'"
    ):
        Config(per_file_ignores={"tests/*": ("XYZ1",)})


def test_config_takes_a_string_as_one_comma_separated_value():
    # What `--select AGL001,AGL002` means; before, a str was iterated character by character and selected every rule.
    assert Config(select="AGL002").select == ("AGL002",)
    assert Config(select="agl002, AGL013").selected_codes() == ["AGL002", "AGL013"]
    assert Config(ignore="AGL002").ignore == ("AGL002",)
    assert Config(per_file_ignores={"tests/*": "AGL002"}).per_file_ignores == {"tests/*": ("AGL002",)}
    assert Config(extend_exclude="gen").extend_exclude == ("gen",)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"select": 5}, "Config.select must be a sequence of strings, got 5"),
        ({"ignore": ["AGL002", 3]}, "Config.ignore must be a sequence of strings, got ['AGL002', 3]"),
        ({"exclude": None}, "Config.exclude must be a sequence of strings, got None"),
        ({"per_file_ignores": ["tests/*"]}, "Config.per_file_ignores must be a dict of glob: codes, got ['tests/*']"),
        ({"respect_gitignore": "no"}, "Config.respect_gitignore must be True or False, got 'no'"),
    ],
)
def test_config_rejects_wrong_types(kwargs, message):
    with pytest.raises(ConfigError) as raised:
        Config(**kwargs)
    assert str(raised.value) == message


def test_lint_paths_without_config_reads_the_project_configuration(project):
    # Like the command line: the nearest pyproject.toml with [tool.autograd-lint], from the current directory.
    write_config(project, 'extend-exclude = ["gen"]\n[tool.autograd-lint.per-file-ignores]\n"tests/*" = ["AGL002"]\n')
    (project / "src").joinpath("pyproject.toml").write_text("[project]\nname = 'inner'\n")  # no table: not ours
    result = lint_paths(["."])
    assert [(os.path.normpath(d.path), d.line, d.code) for d in result.diagnostics] == [
        ("a.py", 11, "AGL002"),
        (os.path.join("src", "model.py"), 11, "AGL002"),
    ]
    # Config() is the built-in defaults, whatever the project configures.
    assert len(lint_paths(["."], Config()).diagnostics) == 4


def test_lint_paths_without_config_raises_for_a_bad_project_configuration(project):
    write_config(project, 'select = ["AGL5"]\n')
    with pytest.raises(ConfigError, match="unknown rule code or prefix 'AGL5'"):
        lint_paths(["."])
