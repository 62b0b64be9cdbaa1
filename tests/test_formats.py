"""`--output-format`: full, json-lines, sarif, github, gitlab, each checked against what its consumer documents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from snippets import EXPLANATION, MESSAGE, SNIPPET, TWO_FINDINGS

import autograd_lint
from autograd_lint.cli import main
from autograd_lint.confirm.runner import RunResult
from autograd_lint.core.diagnostic import Diagnostic, Severity
from autograd_lint.report.formats import Sources
from autograd_lint.report.output import FORMATS, render
from autograd_lint.report.pages import rule_page
from autograd_lint.rules import OPT_IN, RULES

REPO = Path(__file__).resolve().parents[1]
# OASIS's SARIF 2.1.0 JSON schema, unchanged (its $id says where it comes from), kept in the repository so
# that a clone tests itself.
SARIF_SCHEMA = REPO / "tests" / "data" / "sarif-schema-2.1.0.json"

# One AGL003 (a warning) at line 4, column 12.
RELU = """\
import torch

def relu(x):
    return x * (x > 0).float()
"""


def invoke(args, input=None, env=None):
    return CliRunner().invoke(main, args, input=input, env=env)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A git checkout (a `.git` marks its root) with the buggy snippet; cwd is its root. The project
    opts in to AGL003, the warning these tests print next to AGL002's error."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "pyproject.toml").write_text('[tool.autograd-lint]\nextend-select = ["AGL003"]\n')
    (tmp_path / "bad.py").write_text(SNIPPET)
    (tmp_path / "relu.py").write_text(RELU)
    (tmp_path / "clean.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def diagnostic(
    path="m.py", line=1, column=1, end_line=None, end_column=None, code="AGL002", message="msg", severity=Severity.ERROR
):
    return Diagnostic(
        path,
        line,
        column,
        code,
        RULES[code].name if code in RULES else "syntax-error",
        severity,
        message,
        end_line if end_line is not None else line,
        end_column if end_column is not None else column + 1,
    )


# --- full -----------------------------------------------------------------------------------------


def test_full_shows_the_line_and_a_caret_under_the_span(project):
    result = invoke(["--output-format", "full", "bad.py"])
    assert result.exit_code == 1
    assert result.stdout == (
        f"bad.py:11:9: AGL002 {MESSAGE}\n"
        "   |\n"
        "11 |         return g * ctx.scale\n"
        "   |         ^^^^^^^^^^^^^^^^^^^^ AGL002\n"
        "   |\n"
        "  = Torch raises 'function ScaleBackward returned an incorrect number of gradients (expected 2, got\n"
        "    1)'. Return one gradient per input, None for inputs that need none.\n"
        "\n"
    )
    assert result.stderr == "Found 1 diagnostic (1 error) in 1 file checked.\n"


def test_full_carets_match_the_reported_columns_for_every_fixture_finding():
    runner_result = CliRunner().invoke(main, ["-q", "--output-format", "json", str(REPO / "fixtures")])
    entries = json.loads(runner_result.stdout)
    assert entries
    # A point (a syntax error, as in a fixture notebook's half-written cell) gets one caret, not a span.
    single_line = [e for e in entries if e["line"] == e["end_line"] and e["end_column"] > e["column"]]
    full = CliRunner().invoke(main, ["-q", "--output-format", "full", str(REPO / "fixtures")]).stdout
    blocks = full.split("\n\n")[:-1]
    assert len(blocks) == len(entries)
    checked = 0
    for entry, block in zip(entries, blocks):
        if entry not in single_line or "\t" in Path(entry["path"]).read_text():
            continue
        source_line, caret_line = block.splitlines()[2], block.splitlines()[3]
        gutter = source_line.index("|") + 2
        carets = re.search(r"\^+", caret_line)
        assert carets.start() - gutter == entry["column"] - 1, block
        assert carets.end() - gutter == entry["end_column"] - 1, block
        checked += 1
    assert checked > 20


def test_full_multi_line_span_marks_each_line():
    source = "x = foo(\n    a,\n    b)\n"
    d = diagnostic(line=1, column=5, end_line=3, end_column=7)
    text = render([d], "full", sources=Sources({"m.py": source}))
    assert text == (
        "m.py:1:5: AGL002 msg\n"
        "  |\n"
        "1 | x = foo(\n"
        "  |     ^^^^\n"
        "2 |     a,\n"
        "  |     ^^\n"
        "3 |     b)\n"
        "  |     ^^ AGL002\n"
        "  |\n"
        "\n"
    )


def test_full_tabs_and_wide_characters_keep_the_caret_under_the_span():
    source = "\ty = '日本' + z\n"
    # `z` is character 13 (1-based) of the line: a tab, then `y = '日本' + ` (11 characters).
    d = diagnostic(line=1, column=13, end_column=14)
    lines = render([d], "full", sources=Sources({"m.py": source})).splitlines()
    assert lines[2] == "1 |     y = '日本' + z"
    # 4 columns for the tab, 2 for each wide character.
    assert lines[3] == "  | " + " " * (4 + len("y = '") + 4 + len("' + ")) + "^ AGL002"


def test_full_for_a_syntax_error_points_one_caret(project):
    (project / "broken.py").write_text("def f(:\n    pass\n")
    result = invoke(["--output-format", "full", "broken.py"])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1:5] == ["  |", "1 | def f(:", "  |       ^ AGL000", "  |"]


def test_full_reads_stdin_source_not_a_file(project):
    result = invoke(["--output-format", "full", "-", "--stdin-filename", "not_on_disk.py"], input=SNIPPET)
    assert result.exit_code == 1
    assert "11 |         return g * ctx.scale\n" in result.stdout


def test_full_shows_confirm_verdict_after_the_snippet():
    d = diagnostic()
    verdict = RunResult("confirmed", "torch raised RuntimeError", 1.5)
    text = render([d], "full", {d: verdict}, sources=Sources({"m.py": "x = 1\n"}))
    assert text.endswith("  |\n    confirmed (1.5 s): torch raised RuntimeError\n\n")


# --- json-lines ------------------------------------------------------------------------------------


def test_json_lines_is_one_json_array_entry_per_line(project):
    (project / "two.py").write_text(TWO_FINDINGS)
    as_json = json.loads(invoke(["--output-format", "json", "bad.py", "two.py", "relu.py"]).stdout)
    result = invoke(["--output-format", "json-lines", "bad.py", "two.py", "relu.py"])
    assert result.exit_code == 1
    assert result.stdout.endswith("\n")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows == as_json
    assert len(rows) == 4
    assert result.stderr == ""


def test_json_lines_clean_is_empty(project):
    result = invoke(["--output-format", "json-lines", "clean.py"])
    assert result.exit_code == 0
    assert result.stdout == ""


def test_json_lines_and_json_carry_confirm_verdicts():
    d = diagnostic()
    verdict = RunResult("not-reproduced", "gradients matched", 2.0)
    expected = {"verdict": "not-reproduced", "evidence": "gradients matched", "seconds": 2.0}
    assert json.loads(render([d], "json-lines", {d: verdict}))["confirm"] == expected
    assert json.loads(render([d], "json", {d: verdict}))[0]["confirm"] == expected


# --- SARIF ------------------------------------------------------------------------------------------


def sarif_validator() -> jsonschema.Draft7Validator:
    assert SARIF_SCHEMA.is_file(), f"the SARIF schema is expected at {SARIF_SCHEMA}"
    schema = json.loads(SARIF_SCHEMA.read_text())
    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    # The schema's artifactLocation.uri is a `uri-reference`: make sure that format is really checked.
    assert not checker.conforms("has space", "uri-reference")
    return jsonschema.Draft7Validator(schema, format_checker=checker)


def test_sarif_validates_against_the_official_schema(project):
    (project / "with space.py").write_text(SNIPPET)
    result = invoke(["--output-format", "sarif", "bad.py", "relu.py", "clean.py", "with space.py"])
    assert result.exit_code == 1
    log = json.loads(result.stdout)
    errors = sorted(sarif_validator().iter_errors(log), key=str)
    assert errors == []
    assert log["version"] == "2.1.0"
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in log["runs"][0]["results"]]
    assert uris == ["bad.py", "relu.py", "with%20space.py"]


def test_sarif_driver_and_rules_come_from_the_rule_pages(project):
    log = json.loads(invoke(["--output-format", "sarif", "clean.py"]).stdout)
    driver = log["runs"][0]["tool"]["driver"]
    assert driver["name"] == "autograd-lint"
    assert driver["version"] == autograd_lint.__version__
    assert driver["informationUri"].startswith("https://")
    by_id = {rule["id"]: rule for rule in driver["rules"]}
    assert list(by_id) == [*RULES, "AGL000", "AGL999"]
    for code, rule_class in RULES.items():
        rule = by_id[code]
        page = rule_page(code)
        assert rule["name"] == rule_class.name
        assert rule["shortDescription"]["text"] == rule_class.summary
        # The full description is the page's opening paragraph, the help is the page.
        assert rule["fullDescription"]["text"] in " ".join(page.split())
        assert len(rule["fullDescription"]["text"]) > len(rule_class.summary) / 2
        assert not rule["fullDescription"]["text"].startswith(("#", "**"))
        assert rule["help"]["text"] == page and rule["help"]["markdown"] == page
        assert rule["defaultConfiguration"]["level"] == rule_class.severity.value
        assert rule["defaultConfiguration"]["enabled"] is (code not in OPT_IN)  # the opt-in rules are off by default
    for rule in driver["rules"]:  # GitHub: non-empty, at most 1024 characters
        for key in ("shortDescription", "fullDescription"):
            assert 0 < len(rule[key]["text"]) <= 1024


def test_sarif_results_have_rule_level_message_relative_uri_and_1_based_region(project, monkeypatch):
    (project / "pkg").mkdir()
    (project / "pkg" / "bad.py").write_text(SNIPPET)
    (project / "pkg" / "relu.py").write_text(RELU)
    # Run from a subdirectory: paths print relative to it, URIs are relative to the repository root.
    runner = CliRunner()
    monkeypatch.chdir(project / "pkg")
    as_json = json.loads(runner.invoke(main, ["--output-format", "json", "."]).stdout)
    log = json.loads(runner.invoke(main, ["--output-format", "sarif", "."]).stdout)
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    assert [r["ruleId"] for r in results] == [e["code"] for e in as_json] == ["AGL002", "AGL003"]
    for result, entry in zip(results, as_json):
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["message"]["text"] == entry["message"]
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == "pkg/" + entry["path"]
        assert location["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert location["region"] == {
            "startLine": entry["line"],
            "startColumn": entry["column"],
            "endLine": entry["end_line"],
            "endColumn": entry["end_column"],
        }
    assert [r["level"] for r in results] == ["error", "warning"]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == project.resolve().as_uri() + "/"
    assert run["columnKind"] == "unicodeCodePoints"
    assert run["invocations"] == [{"executionSuccessful": True, "toolExecutionNotifications": []}]


def test_sarif_reports_unreadable_files_as_notifications_and_exits_2(project):
    (project / "undecodable.py").write_bytes(b"x = '\xff\xfe'\n")
    result = invoke(["--output-format", "sarif", "bad.py", "undecodable.py", "missing.py"])
    assert result.exit_code == 2
    log = json.loads(result.stdout)
    assert list(sarif_validator().iter_errors(log)) == []
    invocation = log["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    notes = {
        n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: n
        for n in invocation["toolExecutionNotifications"]
    }
    assert set(notes) == {"missing.py", "undecodable.py"}
    assert notes["missing.py"]["message"]["text"] == "missing.py: no such file or directory"
    assert [r["ruleId"] for r in log["runs"][0]["results"]] == ["AGL002"]


def test_sarif_carries_confirm_verdicts_in_result_properties():
    d = diagnostic()
    verdict = RunResult("confirmed", "expected 2, got 1", 0.8)
    log = json.loads(render([d], "sarif", {d: verdict}, root=str(Path.cwd())))
    assert list(sarif_validator().iter_errors(log)) == []
    assert log["runs"][0]["results"][0]["properties"] == {
        "confirm": {"verdict": "confirmed", "evidence": "expected 2, got 1", "seconds": 0.8}
    }


def test_sarif_file_outside_the_repository_gets_an_absolute_file_uri(project, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "far.py"
    outside.write_text(SNIPPET)
    log = json.loads(invoke(["--output-format", "sarif", str(outside)]).stdout)
    assert list(sarif_validator().iter_errors(log)) == []
    location = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": outside.resolve().as_uri()}


# --- GitHub workflow commands ----------------------------------------------------------------------


def parse_workflow_command(line: str) -> tuple[str, dict[str, str], str]:
    """Parse `::command key=value,...::message` as the Actions runner does, undoing its escapes."""
    match = re.fullmatch(r"::(\w+) ([^:]*)::(.*)", line)
    assert match, line

    def unescape(text: str) -> str:
        for escaped, raw in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
            text = text.replace(escaped, raw)
        return text

    properties = dict(item.split("=", 1) for item in match.group(2).split(","))
    return match.group(1), {k: unescape(v) for k, v in properties.items()}, unescape(match.group(3))


def test_github_annotations(project):
    result = invoke(["--output-format", "github", "bad.py", "relu.py"])
    assert result.exit_code == 1
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"::error file=bad.py,line=11,col=9,endLine=11,endColumn=29,title=AGL002 backward-arity-mismatch::{MESSAGE}"
    )
    command, properties, message = parse_workflow_command(lines[1])
    assert command == "warning"
    assert properties == {
        "file": "relu.py",
        "line": "4",
        "col": "12",
        "endLine": "4",
        "endColumn": "31",
        "title": "AGL003 handwritten-piecewise-activation",
    }
    assert message.startswith("`x * (x > 0).float()` is a hand-written activation of `x`")


def test_github_escapes_properties_and_message():
    d = diagnostic(path="odd,name:x.py", message="100% sure\nsecond line, with: colon")
    line = render([d], "github", root=str(Path.cwd())).rstrip("\n")
    assert "\n" not in line
    assert "file=odd%2Cname%3Ax.py," in line
    assert line.endswith("::100%25 sure%0Asecond line, with: colon")
    command, properties, message = parse_workflow_command(line)
    assert properties["file"] == "odd,name:x.py"
    assert message == "100% sure\nsecond line, with: colon"


def test_github_paths_are_relative_to_the_repository_root(project, monkeypatch):
    (project / "src").mkdir()
    (project / "src" / "m.py").write_text(SNIPPET)
    monkeypatch.chdir(project / "src")
    _, properties, _ = parse_workflow_command(invoke(["--output-format", "github", "m.py"]).stdout.strip())
    assert properties["file"] == "src/m.py"


def test_github_appends_confirm_verdict_to_the_message():
    d = diagnostic()
    text = render([d], "github", {d: RunResult("confirmed", "expected 2, got 1", 1.0)}, root=str(Path.cwd()))
    _, _, message = parse_workflow_command(text.strip())
    assert message == "msg\n\n--confirm: confirmed (1 s): expected 2, got 1"


# --- GitLab code quality ---------------------------------------------------------------------------

GITLAB_SEVERITIES = {"info", "minor", "major", "critical", "blocker"}


def check_code_quality_shape(issues) -> None:
    """The fields GitLab's code-quality report requires, with their types."""
    assert isinstance(issues, list)
    for issue in issues:
        assert isinstance(issue["description"], str) and issue["description"]
        assert isinstance(issue["check_name"], str) and issue["check_name"]
        assert re.fullmatch(r"[0-9a-f]{64}", issue["fingerprint"])
        assert issue["severity"] in GITLAB_SEVERITIES
        assert isinstance(issue["location"]["path"], str) and not issue["location"]["path"].startswith("/")
        assert isinstance(issue["location"]["lines"]["begin"], int) and issue["location"]["lines"]["begin"] >= 1
    fingerprints = [issue["fingerprint"] for issue in issues]
    assert len(set(fingerprints)) == len(fingerprints), "fingerprints must be unique within a report"


def test_gitlab_code_quality_report(project):
    result = invoke(["--output-format", "gitlab", "bad.py", "relu.py"])
    assert result.exit_code == 1
    issues = json.loads(result.stdout)
    check_code_quality_shape(issues)
    assert [
        (i["check_name"], i["severity"], i["location"]["path"], i["location"]["lines"]["begin"]) for i in issues
    ] == [
        ("AGL002", "major", "bad.py", 11),
        ("AGL003", "minor", "relu.py", 4),
    ]
    assert issues[0]["description"] == f"AGL002: {MESSAGE}"


def fingerprints(args) -> dict[tuple[str, str], list[str]]:
    result = invoke(["--output-format", "gitlab", *args])
    found: dict[tuple[str, str], list[str]] = {}
    for issue in json.loads(result.stdout):
        found.setdefault((issue["location"]["path"], issue["check_name"]), []).append(issue["fingerprint"])
    return found


def test_gitlab_fingerprints_survive_reruns_and_line_shifts(project):
    before = fingerprints(["bad.py", "relu.py"])
    assert before == fingerprints(["bad.py", "relu.py"])
    (project / "bad.py").write_text("# a comment\n\n\n" + SNIPPET)
    (project / "relu.py").write_text(RELU.replace("def relu", "import math\n\n\ndef relu"))
    shifted = json.loads(invoke(["--output-format", "gitlab", "bad.py", "relu.py"]).stdout)
    assert [i["location"]["lines"]["begin"] for i in shifted] == [14, 7]
    assert fingerprints(["bad.py", "relu.py"]) == before


def test_gitlab_fingerprints_differ_by_path_and_by_flagged_code(project):
    (project / "copy.py").write_text(SNIPPET)
    (project / "other.py").write_text(SNIPPET.replace("return g * ctx.scale", "return g * ctx.scale * 2"))
    found = fingerprints(["bad.py", "copy.py", "other.py"])
    values = [fp for fps in found.values() for fp in fps]
    assert len(values) == 3 and len(set(values)) == 3


def test_gitlab_identical_findings_in_one_file_get_distinct_stable_fingerprints(project):
    (project / "twice.py").write_text(
        SNIPPET
        + "\n\n"
        + SNIPPET.replace("class Scale", "class Scale2").replace(
            "import torch\nfrom torch.autograd import Function\n", ""
        )
    )
    first = json.loads(invoke(["--output-format", "gitlab", "twice.py"]).stdout)
    check_code_quality_shape(first)
    assert len(first) == 2
    assert first == json.loads(invoke(["--output-format", "gitlab", "twice.py"]).stdout)


def test_gitlab_and_github_paths_for_stdin_use_the_stdin_filename(project):
    issues = json.loads(
        invoke(["--output-format", "gitlab", "-", "--stdin-filename", "src/m.py"], input=SNIPPET).stdout
    )
    check_code_quality_shape(issues)
    assert issues[0]["location"]["path"] == "src/m.py"


# --- every format -----------------------------------------------------------------------------------


def test_formats_list():
    assert FORMATS == ("text", "full", "json", "json-lines", "sarif", "github", "gitlab")


@pytest.mark.parametrize("output_format", FORMATS)
def test_every_format_is_deterministic_and_names_every_finding(project, output_format):
    (project / "two.py").write_text(TWO_FINDINGS)
    first = invoke(["-q", "--output-format", output_format, "bad.py", "two.py", "relu.py"])
    second = invoke(["-q", "--output-format", output_format, "relu.py", "two.py", "bad.py"])
    assert first.exit_code == 1
    assert first.stdout == second.stdout
    assert first.stdout.count("AGL002") >= 3 and "AGL003" in first.stdout


def test_render_rejects_an_unknown_format():
    with pytest.raises(ValueError):
        render([diagnostic()], "xml")


def test_file_errors_do_not_break_machine_formats(project):
    for output_format in ("json", "json-lines", "gitlab", "sarif"):
        result = invoke(["--output-format", output_format, "bad.py", "missing.py"])
        assert result.exit_code == 2
        assert "missing.py: no such file or directory" in result.stderr
        if output_format == "json-lines":
            assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == ["bad.py"]
        else:
            assert json.loads(result.stdout)


def test_sources_fall_back_to_nothing_for_an_unreadable_path():
    assert Sources().lines("/nonexistent/dir/x.py") == []
    assert Sources().span_text(diagnostic(path="/nonexistent/dir/x.py")) == ""


def test_cli_confirm_verdicts_reach_json_lines_and_sarif(project, monkeypatch):
    def fake_confirm(diagnostics, limits, jobs, sources, progress, **options):
        return {d: RunResult("confirmed", f"proved {d.code}", 1.25) for d in diagnostics}

    monkeypatch.setattr("autograd_lint.confirm.session.confirm_diagnostics", fake_confirm)
    rows = [
        json.loads(line)
        for line in invoke(["--confirm", "--output-format", "json-lines", "bad.py"]).stdout.splitlines()
    ]
    assert [row["confirm"] for row in rows] == [{"verdict": "confirmed", "evidence": "proved AGL002", "seconds": 1.25}]
    result = invoke(["--confirm", "--output-format", "sarif", "bad.py", "relu.py"])
    assert result.exit_code == 1
    log = json.loads(result.stdout)
    assert list(sarif_validator().iter_errors(log)) == []
    assert [r["properties"]["confirm"]["evidence"] for r in log["runs"][0]["results"]] == [
        "proved AGL002",
        "proved AGL003",
    ]


# --- message and explanation -----------------------------------------------------------------------


def test_every_format_carries_the_message_and_where_it_has_room_the_explanation(project):
    rows = [json.loads(line) for line in invoke(["--output-format", "json-lines", "bad.py"]).stdout.splitlines()]
    assert [(row["message"], row["explanation"]) for row in rows] == [(MESSAGE, EXPLANATION)]
    log = json.loads(invoke(["--output-format", "sarif", "bad.py"]).stdout)
    assert list(sarif_validator().iter_errors(log)) == []
    [result] = log["runs"][0]["results"]
    assert result["message"] == {"text": MESSAGE}
    assert result["properties"] == {"explanation": EXPLANATION}
    [issue] = json.loads(invoke(["--output-format", "gitlab", "bad.py"]).stdout)
    assert issue["description"] == f"AGL002: {MESSAGE}"
    assert issue["content"] == {"body": EXPLANATION}
    _, _, message = parse_workflow_command(invoke(["--output-format", "github", "bad.py"]).stdout.strip())
    assert message == MESSAGE


def test_full_prints_the_explanation_under_the_source_wrapped_and_none_when_there_is_none():
    explained = Diagnostic(
        "m.py", 1, 1, "AGL002", "backward-arity-mismatch", Severity.ERROR, "short", 1, 2, explanation="word " * 30
    )
    text = render([explained, diagnostic()], "full", sources=Sources({"m.py": "x = 1\n"}))
    first, second = text.split("\n\n")[:2]
    assert first.splitlines()[-2:] == ["  = " + " ".join(["word"] * 19), "    " + " ".join(["word"] * 11)]
    assert "=" not in second.replace("x = 1", "")


# --- output that cannot drive the terminal ---------------------------------------------------------

# A string literal that sets the window title (OSC), switches to the alternate screen (CSI), then a C1 CSI
# (clear the screen) and a right-to-left override (Trojan Source), all raw in the file.
HOSTILE_LITERAL = '"\x1b]0;pwned\x07\x1b[?1049h\x9b2J\u202e"'
HOSTILE = f"""\
import torch
from torch.autograd import Function


class Keep(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x, {HOSTILE_LITERAL})
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2
"""
HOSTILE_SHOWN = '"␛]0;pwned␇␛[?1049h\\x9b2J\\u202e"'
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_escape_controls_shows_every_control_visibly_and_keeps_layout():
    from autograd_lint.report.escaping import escape_controls

    assert escape_controls("a\x1b[31mb\x07\x00\x7f") == "a␛[31mb␇␀␡"
    assert escape_controls("\x85\x9b\u202e\u2066\u200f") == "\\x85\\x9b\\u202e\\u2066\\u200f"
    assert escape_controls("tab\tnew\nline é 日本 ␛") == "tab\tnew\nline é 日本 ␛"
    assert escape_controls("\r") == "␍"


@pytest.mark.parametrize("output_format", ["text", "full", "github"])
def test_control_characters_from_the_source_are_escaped_in_human_formats(project, output_format):
    (project / "hostile.py").write_text(HOSTILE, encoding="utf-8")
    result = invoke(["--output-format", output_format, "hostile.py"])
    assert result.exit_code == 1
    assert RAW_CONTROLS.findall(result.stdout) == []
    assert f"save_for_backward is given `{HOSTILE_SHOWN}` (a str), not a tensor" in result.stdout
    if output_format == "full":
        assert f"8 |         ctx.save_for_backward(x, {HOSTILE_SHOWN})\n" in result.stdout
        caret_line = result.stdout.splitlines()[3]
        # The span starts at column 34 and covers the literal as shown: one column per control picture.
        assert caret_line == "  |" + " " * 34 + "^" * len(HOSTILE_SHOWN) + " AGL012"


@pytest.mark.parametrize("output_format", ["json", "json-lines", "sarif", "gitlab"])
def test_machine_formats_keep_the_exact_text_json_escaped(project, output_format):
    (project / "hostile.py").write_text(HOSTILE, encoding="utf-8")
    result = invoke(["--output-format", output_format, "hostile.py"])
    assert result.exit_code == 1
    assert RAW_CONTROLS.findall(result.stdout) == []  # the encoder writes \u001b, never the byte
    assert "\\u001b]0;pwned\\u0007" in result.stdout
    report = json.loads(result.stdout.splitlines()[0] if output_format == "json-lines" else result.stdout)
    message = {
        "json": lambda: report[0]["message"],
        "json-lines": lambda: report["message"],
        "sarif": lambda: report["runs"][0]["results"][0]["message"]["text"],
        "gitlab": lambda: report[0]["description"],
    }[output_format]()
    assert HOSTILE_LITERAL in message


def test_colour_output_has_only_our_own_sequences(project):
    (project / "hostile.py").write_text(HOSTILE, encoding="utf-8")
    for output_format in ("text", "full"):
        result = invoke(["--color", "always", "--output-format", output_format, "hostile.py"])
        assert result.exit_code == 1
        sgr = re.compile(r"\x1b\[[0-9;]*m")
        assert sgr.search(result.stdout), "colours are still on"
        assert RAW_CONTROLS.findall(sgr.sub("", result.stdout)) == []
        assert HOSTILE_SHOWN in sgr.sub("", result.stdout)


def test_confirm_evidence_is_escaped_in_human_formats_and_exact_in_json():
    d = diagnostic()
    evidence = "forward printed \x1b]0;pwned\x07\x1b[?1049h and \x9b2J\u202e"
    verdicts = {d: RunResult("confirmed\x1b[8m", evidence, 1.0)}
    shown = "forward printed ␛]0;pwned␇␛[?1049h and \\x9b2J\\u202e"
    for output_format in ("text", "full"):
        text = render([d], output_format, verdicts, sources=Sources({"m.py": "x = 1\n"}))
        assert RAW_CONTROLS.findall(text) == []
        assert f"    confirmed␛[8m (1 s): {shown}\n" in text
    coloured = render([d], "text", verdicts, color=True)
    assert RAW_CONTROLS.findall(re.sub(r"\x1b\[[0-9;]*m", "", coloured)) == []
    github = render([d], "github", verdicts, root=str(Path.cwd()))
    assert RAW_CONTROLS.findall(github) == [] and shown in github
    assert json.loads(render([d], "json", verdicts))[0]["confirm"]["evidence"] == evidence


# --- documentation links ---------------------------------------------------------------------------


def test_without_documentation_url_json_url_is_null_and_sarif_has_no_help_uri(project):
    [entry] = json.loads(invoke(["--output-format", "json", "bad.py"]).stdout)
    assert entry["url"] is None
    log = json.loads(invoke(["--output-format", "sarif", "bad.py"]).stdout)
    assert all("helpUri" not in rule for rule in log["runs"][0]["tool"]["driver"]["rules"])


def test_documentation_url_fills_in_code_and_name_for_json_and_sarif(project):
    (project / "pyproject.toml").write_text(
        '[tool.autograd-lint]\nextend-select = ["AGL003"]\n'
        'documentation-url = "https://docs.example.org/autograd-lint/{code}/{name}.html"\n'
    )
    output = invoke(["--output-format", "json-lines", "bad.py", "relu.py"]).stdout
    rows = [json.loads(line) for line in output.splitlines()]
    assert [row["url"] for row in rows] == [
        "https://docs.example.org/autograd-lint/AGL002/backward-arity-mismatch.html",
        "https://docs.example.org/autograd-lint/AGL003/handwritten-piecewise-activation.html",
    ]
    log = json.loads(invoke(["--output-format", "sarif", "bad.py"]).stdout)
    assert list(sarif_validator().iter_errors(log)) == []
    rules = {rule["id"]: rule for rule in log["runs"][0]["tool"]["driver"]["rules"]}
    for code, rule_class in RULES.items():
        assert rules[code]["helpUri"] == f"https://docs.example.org/autograd-lint/{code}/{rule_class.name}.html"
    assert "helpUri" not in rules["AGL000"] and "helpUri" not in rules["AGL999"]


def test_a_syntax_error_has_no_documentation_link(project):
    (project / "pyproject.toml").write_text('[tool.autograd-lint]\ndocumentation-url = "https://x.org/{code}"\n')
    (project / "broken.py").write_text("def f(:\n")
    [entry] = json.loads(invoke(["--output-format", "json", "broken.py"]).stdout)
    assert (entry["code"], entry["url"]) == ("AGL000", None)


@pytest.mark.parametrize(
    "value, error",
    [
        ('"https://x.org/rules/"', "documentation-url must contain {code} or {name}, got 'https://x.org/rules/'"),
        (
            '"https://x.org/{rule}"',
            "documentation-url: only {code} and {name} can be filled in, got 'https://x.org/{rule}' ('rule')",
        ),
        ('"https://x.org/{code"', "documentation-url: only {code} and {name} can be filled in"),
        ("3", "documentation-url must be a string, got 3"),
    ],
)
def test_a_bad_documentation_url_is_a_one_line_error(project, value, error):
    (project / "pyproject.toml").write_text(f"[tool.autograd-lint]\ndocumentation-url = {value}\n")
    result = invoke(["bad.py"])
    assert result.exit_code == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("autograd-lint: error: ") and error in line


def test_full_counts_lines_as_python_does_with_a_form_feed_and_a_c1_control():
    # str.splitlines would break at \x0c and \x85 and show the wrong line under the header.
    source = "\x0c\nx = '\x85'\ny = foo\n"
    d = diagnostic(line=3, column=5, end_column=8)
    text = render([d], "full", sources=Sources({"m.py": source}))
    assert text.splitlines()[1:4] == ["  |", "3 | y = foo", "  |     ^^^ AGL002"]
    whole = diagnostic(line=1, column=1, end_line=2, end_column=10)
    shown = render([whole], "full", sources=Sources({"m.py": source})).splitlines()
    assert shown[2] == "1 | ␌" and shown[4] == "2 | x = '\\x85'"
