"""What the speed-ups must not change: prefiltered, parallel and cached runs give the same findings.

Speed itself is measured by benchmarks/compare.py, never here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from autograd_lint import lint_paths

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def torch_source() -> str:
    import torch

    return os.path.dirname(torch.__file__)


def test_prefilter_loses_nothing_on_torchs_source():
    jobs = os.cpu_count() or 2
    filtered = lint_paths([torch_source()], jobs=jobs)
    unfiltered = lint_paths([torch_source()], jobs=jobs, prefilter=False)
    assert filtered.files_checked == unfiltered.files_checked > 2000
    assert filtered.diagnostics == unfiltered.diagnostics
    assert filtered.errors == unfiltered.errors


def test_prefilter_loses_nothing_on_the_fixtures():
    assert lint_paths([str(FIXTURES)]).diagnostics == lint_paths([str(FIXTURES)], prefilter=False).diagnostics


def test_prefilter_loses_nothing_on_the_fixtures_with_every_rule():
    from autograd_lint import Config

    every_rule = Config(select=("ALL",))
    filtered = lint_paths([str(FIXTURES)], every_rule)
    assert filtered.diagnostics == lint_paths([str(FIXTURES)], every_rule, prefilter=False).diagnostics
    assert {"AGL003", "AGL004", "AGL010"} <= {d.code for d in filtered.diagnostics}  # the opt-in rules ran


def test_parallel_run_equals_serial_run_in_the_same_order():
    serial = lint_paths([str(FIXTURES)], jobs=1)
    parallel = lint_paths([str(FIXTURES)], jobs=2)
    assert serial.diagnostics and parallel.diagnostics == serial.diagnostics
    assert parallel.files_checked == serial.files_checked


def test_cache_gives_the_same_findings_and_follows_edits(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES, tree)
    cache = tmp_path / "cache"
    cold = lint_paths([str(tree)], cache_dir=cache)
    warm = lint_paths([str(tree)], cache_dir=cache)
    assert warm.diagnostics == cold.diagnostics and warm.files_checked == cold.files_checked
    assert all(d.explanation for d in warm.diagnostics)  # the cache keeps the explanation beside the message
    entries = list(cache.rglob("*.json"))
    assert len(entries) == cold.files_checked
    # An edit invalidates that file's entry: the new finding appears, the old one goes.
    target = tree / "motivating" / "case_c_arity.py"
    target.write_text(
        target.read_text().replace("return grad_output * ctx.scale", "return grad_output * ctx.scale, None")
    )
    edited = lint_paths([str(tree)], cache_dir=cache)
    assert [d for d in edited.diagnostics if d.path.endswith("case_c_arity.py")] == []
    assert len(edited.diagnostics) == len(cold.diagnostics) - 1


def test_corrupt_cache_entry_is_a_miss(tmp_path):
    cache = tmp_path / "cache"
    cold = lint_paths([str(FIXTURES / "motivating")], cache_dir=cache)
    for entry in cache.rglob("*.json"):
        entry.write_text("{ not json")
    again = lint_paths([str(FIXTURES / "motivating")], cache_dir=cache)
    assert again.diagnostics == cold.diagnostics


def test_a_different_selection_does_not_reuse_entries(tmp_path):
    from autograd_lint import Config

    cache = tmp_path / "cache"
    everything = lint_paths([str(FIXTURES / "motivating")], Config(select=("ALL",)), cache_dir=cache)
    only_agl002 = lint_paths([str(FIXTURES / "motivating")], Config(select=("AGL002",)), cache_dir=cache)
    assert {d.code for d in only_agl002.diagnostics} == {"AGL002"}
    assert {d.code for d in everything.diagnostics} > {"AGL002"}


def test_cli_caches_results_and_clean_removes_them(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from autograd_lint.cli import main

    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "motivating", tree)
    monkeypatch.chdir(tmp_path)
    first = CliRunner().invoke(main, ["-q", "tree"])
    assert first.exit_code == 1 and (tmp_path / ".autograd_lint_cache").is_dir()
    assert (tmp_path / ".autograd_lint_cache" / ".gitignore").read_text().strip().endswith("*")
    second = CliRunner().invoke(main, ["-q", "tree"])
    assert second.stdout == first.stdout
    custom = CliRunner().invoke(main, ["-q", "--cache-dir", "elsewhere", "tree"])
    assert custom.stdout == first.stdout and (tmp_path / "elsewhere").is_dir()
    none = CliRunner().invoke(main, ["-q", "--no-cache", "-j", "1", "tree"])
    assert none.stdout == first.stdout
    cleaned = CliRunner().invoke(main, ["clean"])
    assert cleaned.exit_code == 0 and not (tmp_path / ".autograd_lint_cache").exists()


def test_a_warm_run_parses_nothing(tmp_path):
    import subprocess
    import sys
    import textwrap

    cache = tmp_path / "cache"
    lint_paths([str(FIXTURES)], cache_dir=cache)
    # In a fresh interpreter, a fully cached run must not even import libcst.
    probe = textwrap.dedent(
        f"""
        import sys
        from autograd_lint import lint_paths
        result = lint_paths([{str(FIXTURES)!r}], cache_dir={str(cache)!r})
        assert result.diagnostics, "cached findings come back"
        print("libcst" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_concurrent_runs_share_a_cache_safely(tmp_path):
    import subprocess
    import sys

    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES, tree)
    cache = tmp_path / "cache"
    command = [
        sys.executable,
        "-m",
        "autograd_lint",
        "-q",
        "--exit-zero",
        "-j",
        "1",
        "--cache-dir",
        str(cache),
        str(tree),
    ]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert outputs[0] and outputs.count(outputs[0]) == 3
    assert not list(cache.rglob(".tmp-*"))  # no half-written entry left behind
    warm = subprocess.run(command, capture_output=True, text=True, timeout=300).stdout
    assert warm == outputs[0]


def test_cached_findings_carry_the_path_as_named_in_this_run(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "motivating", tree)
    cache = tmp_path / "cache"
    monkeypatch.chdir(tmp_path)
    absolute = lint_paths([str(tree)], cache_dir=cache)
    relative = lint_paths(["tree"], cache_dir=cache)
    assert [d.path for d in relative.diagnostics] == [os.path.relpath(d.path, tmp_path) for d in absolute.diagnostics]


def test_a_run_that_parses_nothing_imports_no_rule_and_not_libcst(tmp_path):
    """Start-up is most of a pre-commit run on a few files: the rules and libcst are imported only when a
    file is parsed. Asked of a fresh interpreter, through the library and through the command line."""
    import subprocess
    import sys

    plain = tmp_path / "plain.py"
    plain.write_text("import os\n\n\ndef size(path):\n    return os.path.getsize(path)\n")
    function = tmp_path / "function.py"
    function.write_text((FIXTURES / "motivating" / "case_c_arity.py").read_text())
    probe = (
        "import sys, autograd_lint\n"
        "result = autograd_lint.lint_paths([sys.argv[1]], autograd_lint.Config(select=('ALL',)))\n"
        "loaded = sorted(m for m in sys.modules if m == 'libcst' or m.startswith('autograd_lint.rules.agl'))\n"
        "print(result.files_checked, len(result.diagnostics), loaded)\n"
    )
    nothing = subprocess.run([sys.executable, "-c", probe, str(plain)], capture_output=True, text=True, check=True)
    assert nothing.stdout.split(" ", 2)[:2] == ["1", "0"] and nothing.stdout.endswith("[]\n")
    parsed = subprocess.run([sys.executable, "-c", probe, str(function)], capture_output=True, text=True, check=True)
    assert "'libcst'" in parsed.stdout and "agl002" in parsed.stdout
    cli = (
        "import sys\n"
        "from autograd_lint.cli import main\n"
        "try:\n"
        "    main(['check', '--no-cache', '--select', 'ALL', sys.argv[1]])\n"
        "except SystemExit as end:\n"
        "    print(end.code, 'libcst' in sys.modules, 'autograd_lint.confirm.runner' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", cli, str(plain)], capture_output=True, text=True, check=True)
    assert run.stdout.splitlines()[-1] == "0 False False"  # nor the confirm machinery


def test_nothing_of_a_linted_file_outlives_it():
    """A cache that keeps the last file's answers keeps its whole tree: each worker then held two large
    trees at once (the peak memory of a run over torch's source was 1.7 times its largest file's)."""
    import gc

    import libcst as cst

    from autograd_lint.core.module import ParsedModule
    from autograd_lint.engine import lint_text
    from autograd_lint.rules import RULES

    # an nn.Module whose forward calls a quantizer helper: the facts read its class and its callers
    source = (FIXTURES / "mixed" / "buggy_binary_tanh.py").read_text()
    assert {d.code for d in lint_text(source, "buggy_binary_tanh.py", list(RULES))} >= {"AGL004"}
    gc.collect()
    assert [o for o in gc.get_objects() if type(o) is ParsedModule] == []
    assert [o for o in gc.get_objects() if type(o) is cst.Module and o.body] == []


def test_a_file_edited_while_a_worker_lints_it_is_not_cached(tmp_path, monkeypatch):
    """Workers read their files themselves; a result is cached only for the bytes its key was made from."""
    from autograd_lint import api

    tree = tmp_path / "tree"
    for copy in ("one", "two", "three"):
        shutil.copytree(FIXTURES / "motivating", tree / copy)
    files = sorted(tree.rglob("*.py"))
    assert len(files) >= 8  # enough for a process pool
    edited = files[0]
    parent = os.getpid()
    read = api.read_bytes

    def read_in_worker_after_an_edit(path):
        data = read(path)
        return data + b"\n# edited meanwhile\n" if os.getpid() != parent and path == str(edited) else data

    monkeypatch.setattr(api, "read_bytes", read_in_worker_after_an_edit)
    cache = tmp_path / "cache"
    result = lint_paths([str(tree)], jobs=2, cache_dir=cache)
    assert result.files_checked == len(files)
    assert len(list(cache.rglob("*.json"))) == len(files) - 1
    assert lint_paths([str(tree)], jobs=2).diagnostics == result.diagnostics


def test_a_linted_files_tree_is_freed_by_the_lint_itself():
    """Nothing of a parsed file is left for the caller's collector to find: the lint breaks the facts' cycles and
    passes over the collector's youngest generation itself (a full pass was 7 % of a cold run)."""
    import gc

    import libcst as cst

    from autograd_lint.core.module import ParsedModule
    from autograd_lint.engine import lint_text
    from autograd_lint.rules import RULES

    source = (FIXTURES / "mixed" / "buggy_binary_tanh.py").read_text()
    gc.collect()
    assert {d.code for d in lint_text(source, "buggy_binary_tanh.py", list(RULES))} >= {"AGL004"}
    gc.disable()  # no pass of the collector's own before the count
    try:
        assert [o for o in gc.get_objects() if type(o) is ParsedModule] == []
        assert [o for o in gc.get_objects() if type(o) is cst.Module and o.body] == []
    finally:
        gc.enable()


def test_a_trees_nodes_are_walked_once_for_every_candidate_and_go_with_the_tree(monkeypatch):
    """The rules whose candidates walk all of a file's nodes (AGL003's products, AGL023's selections, AGL004's
    calls) share one walk of its tree; the walk is kept no longer than the tree."""
    import ast
    import weakref

    from autograd_lint.core import prefilter
    from autograd_lint.engine import lint_text

    walked: list[ast.AST] = []
    walk = prefilter._walked_nodes
    monkeypatch.setattr(prefilter, "_walked_nodes", lambda tree: walked.append(tree) or walk(tree))
    source = "import torch\n\ndef f(x):\n    y = x * (x > 0)\n    return torch.where(x > 0, torch.log(x), 0.0), y\n"
    assert {d.code for d in lint_text(source, "m.py", ["AGL003", "AGL023"])} == {"AGL003", "AGL023"}
    assert [type(tree) for tree in walked] == [ast.Module]

    walked.clear()
    tree = ast.parse(source)
    nodes = prefilter.python_nodes(tree)
    assert nodes[0] is tree and prefilter.python_nodes(tree) == nodes == walk(tree)
    assert walked == [tree]
    kept = weakref.ref(tree)
    del tree, nodes, walked[:]
    assert kept() is None


def chain(count: int) -> str:
    return "x = " + " + ".join(["a"] * count) + "\n"


def test_the_quick_syntax_check_never_accepts_what_cpython_rejects():
    """A file no rule's text cues are in is only checked by CPython's symbol-table pass, which accepted one level
    of nesting more than ast.parse: around the limit, the verdict is the one of the full parse."""
    from autograd_lint.engine import lint_text

    def verdicts(prefilter: bool) -> list[list[str]]:
        return [
            [d.code for d in lint_text(chain(count), "deep.py", ["AGL023"], prefilter=prefilter)]
            for count in range(2970, 3000, 3)
        ]

    quick = verdicts(prefilter=True)
    assert quick == verdicts(prefilter=False)  # without the prefilter every file is parsed in full
    assert [] in quick and ["AGL000"] in quick


def test_the_quick_syntax_check_reports_what_the_full_parse_reports():
    from autograd_lint.engine import lint_text

    cases = {
        "def f(:\n    pass\n": "AGL000",  # a syntax error: the full parse words and places it
        "def f(a, a):\n    pass\n": None,  # the symbol table rejects it, ast.parse does not: as before
        "nonlocal x\n": None,
        "x = 1\n": None,
    }
    for source, expected in cases.items():
        found = [(d.code, d.line) for d in lint_text(source, "m.py", ["AGL023"])]
        assert found == ([(expected, 1)] if expected else []), source


def test_a_cues_fast_searches_find_what_its_patterns_find():
    """Every cue gives the same answer through its derived searches as through its patterns, on the fixtures,
    the package and texts written at each search's edges."""
    from autograd_lint.core.prefilter import FOLLOW_UPS, FUNCTION_CLASS
    from autograd_lint.rules.text_cues import TEXT_CUES

    root = FIXTURES.parent
    texts = [
        path.read_text(encoding="utf-8")
        for folder in ("fixtures", "autograd_lint")
        for path in (root / folder).rglob("*.py")
    ]
    texts += [
        "nowhere(x)",
        "x.where(c, a, b)",
        "_where(x)",
        "where\n(x)",
        "y = torch.where (m, a, b)",
        "class F(autograd.Function):",
        "F = Function",
        "from torch.autograd import Function as F",
        "mask = x > 0\n",
        "  mask = (x >= 0)\n",
        "mask =\\\n  x > 0\n",
        "f(a=b > 0)\n",
        "return x<0\n",
        "    return (x > 0)\n",
        "y = x.gt(0)\n",
        "np.floor(x)",
        "math.ceil(x)",
        "x.floor()",
        "numpy.round(x)",
        "torch.sign(x)",
        "a\nmask = x > 0",
        "mask = x > 0",
        "mask = x > 0\ny = x * mask\n",
        "mask = (\n    x > 0\n)\ny = mask.float() * x\n",
        "def positive(h):\n    return h > 0\n\n\ndef f(x):\n    return x * positive(x)\n",
    ]
    cues = {id(cue): cue for cues in TEXT_CUES.values() for cue in cues} | {id(FUNCTION_CLASS): FUNCTION_CLASS}

    def found_by_the_patterns(cue, text):
        return any(s in text for s in cue.substrings) or any(
            pattern.search(text) and (not follow_up or FOLLOW_UPS[follow_up](text, pattern.finditer(text)))
            for pattern, follow_up in zip(cue.patterns, cue.follow_ups)
        )

    differing = [
        (cue.description, text[:60])
        for cue in cues.values()
        for text in texts
        if cue.found_in(text) != found_by_the_patterns(cue, text)
    ]
    assert differing == []
    found = [cue.found_in(text) for cue in cues.values() for text in texts]
    assert 100 < sum(found) < len(found)


def test_how_a_pattern_is_searched():
    import re

    from autograd_lint.core.prefilter import _after_leading_assertions, _line_lead, _top_level_alternatives

    assert _top_level_alternatives(r"class\s+\w+\([^)|]*Function|=\s*F\b|(?:a|b)") == [
        r"class\s+\w+\([^)|]*Function",
        r"=\s*F\b",
        r"(?:a|b)",
    ]
    assert _top_level_alternatives(r"[]|]x|\|y") == [r"[]|]x", r"\|y"]
    assert _after_leading_assertions(r"\b(?:where|mask)\s*\(") == r"(?:where|mask)\s*\("
    assert _after_leading_assertions(r"(?<!np)(?<!math)\.floor\(") == r"\.floor\("
    assert _after_leading_assertions(r"where\(") is None
    assert _line_lead(r"^[ \t]*\w+[ \t]*=[ \t]*\w+ > ", re.M) == r"=[ \t]*\w+ > "
    assert _line_lead(r"^[ \t]*return[ \t]+x", re.M) == r"return[ \t]+x"
    assert _line_lead(r"^\s*\w+\s*=", re.M) is None  # \s may take in a line break: searched as it is
    assert _line_lead(r"^[ \t]*return", 0) is None  # without MULTILINE, ^ is the text's start
    assert _line_lead(r"^[^x]*=", re.M) is None  # a negated class takes in line breaks
