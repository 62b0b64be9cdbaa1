"""The pre-commit hook, run by real pre-commit from a git repository whose config points at this checkout.

pre-commit installs hooks from a git commit, so the working tree of this checkout (tracked and new,
not ignored, files) is committed to a scratch repository first: the hook under test is the code
being tested, not the last commit. The hook environment is built once (pip, from the package index)
and shared by the tests through one PRE_COMMIT_HOME.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snippets import MESSAGE, SNIPPET

REPO = Path(__file__).resolve().parents[1]
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "autograd-lint tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "autograd-lint tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT"))}
    env.update(GIT_IDENTITY)
    env["GIT_CONFIG_GLOBAL"] = os.devnull  # no user git configuration (signing, hooks, templates)
    env["PRE_COMMIT_HOME"] = str(tmp_path_factory.mktemp("pre-commit-home"))
    return env


@pytest.fixture(scope="module")
def hook_repository(tmp_path_factory, environment) -> tuple[Path, str]:
    """(a git repository holding this checkout's working tree, its commit)."""
    snapshot = tmp_path_factory.mktemp("hook-repository")
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO, env=environment)
    copied = 0
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            target = snapshot / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            copied += 1
    assert (snapshot / ".pre-commit-hooks.yaml").is_file() and copied > 50
    git("init", "-q", cwd=snapshot, env=environment)
    git("add", "-A", cwd=snapshot, env=environment)
    git("commit", "-q", "-m", "working tree of the checkout under test", cwd=snapshot, env=environment)
    return snapshot, git("rev-parse", "HEAD", cwd=snapshot, env=environment).strip()


def run_pre_commit(
    tmp_path: Path,
    files: dict[str, str],
    hook_repository,
    environment,
    hook: dict | None = None,
    more_hooks: list[dict] = (),
    run_args: tuple[str, ...] = (),
):
    """A new git repository with `files` and a config using the hook; `pre-commit run --all-files` in it."""
    project = tmp_path / "project"
    project.mkdir(parents=True)
    git("init", "-q", cwd=project, env=environment)
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    repository, rev = hook_repository
    hooks = [{"id": "autograd-lint", **(hook or {})}, *more_hooks]
    config = {"repos": [{"repo": str(repository), "rev": rev, "hooks": hooks}]}
    (project / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    git("add", "-A", cwd=project, env=environment)
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", *run_args, "--all-files", "--color", "never"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_manifest_is_valid_for_pre_commit():
    proc = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-manifest", ".pre-commit-hooks.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert [hook["id"] for hook in hooks] == ["autograd-lint"]
    hook = hooks[0]
    assert hook["language"] == "python"
    assert hook["entry"].split()[0] == "autograd-lint"
    assert "--force-exclude" in hook["entry"].split()
    assert hook["types_or"] == ["python", "pyi", "jupyter"]
    assert hook["require_serial"] is True
    assert hook["args"] == []


def test_hook_fails_on_a_buggy_file(tmp_path, hook_repository, environment):
    proc = run_pre_commit(tmp_path, {"bad.py": SNIPPET, "clean.py": "x = 1\n"}, hook_repository, environment)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "autograd-lint" in proc.stdout and "Failed" in proc.stdout
    assert "- exit code: 1" in proc.stdout
    assert f"bad.py:11:9: AGL002 {MESSAGE}" in proc.stdout.splitlines()


def test_hook_passes_on_a_clean_file(tmp_path, hook_repository, environment):
    proc = run_pre_commit(
        tmp_path, {"clean.py": "x = 1\n", "pkg/mod.py": "def f():\n    return 2\n"}, hook_repository, environment
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed" in proc.stdout
    assert "AGL" not in proc.stdout


def test_hook_passes_without_python_files(tmp_path, hook_repository, environment):
    proc = run_pre_commit(tmp_path, {"README.md": "# no code\n", "notes.txt": SNIPPET}, hook_repository, environment)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(no files to check)Skipped" in proc.stdout


def test_hook_checks_stub_files(tmp_path, hook_repository, environment):
    proc = run_pre_commit(tmp_path, {"stubs/model.pyi": SNIPPET}, hook_repository, environment)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "stubs/model.pyi:11:9: AGL002" in proc.stdout


def test_hook_checks_notebooks(tmp_path, hook_repository, environment):
    notebook = (REPO / "fixtures" / "notebooks" / "buggy_prototype_scaled_matmul.ipynb").read_text()
    proc = run_pre_commit(tmp_path, {"notebooks/proto.ipynb": notebook}, hook_repository, environment)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "notebooks/proto.ipynb:cell 3:12:9: AGL002" in proc.stdout


def test_hook_keeps_configured_excludes_for_the_files_pre_commit_names(tmp_path, hook_repository, environment):
    files = {
        "pyproject.toml": '[tool.autograd-lint]\nextend-exclude = ["legacy"]\n',
        "legacy/old.py": SNIPPET,
        "clean.py": "x = 1\n",
    }
    proc = run_pre_commit(tmp_path, files, hook_repository, environment)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed" in proc.stdout


def test_hook_args_from_the_users_config(tmp_path, hook_repository, environment):
    proc = run_pre_commit(
        tmp_path, {"bad.py": SNIPPET}, hook_repository, environment, hook={"args": ["--ignore", "AGL002"]}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed" in proc.stdout


def test_confirm_mode_as_a_manual_stage_hook_with_python(tmp_path, hook_repository, environment):
    """The README's recipe: torch is not in the hook's environment; --python names an interpreter that has it."""
    confirm = {
        "id": "autograd-lint",
        "alias": "autograd-lint-confirm",
        "name": "autograd-lint --confirmed-only",
        "args": ["--confirmed-only", "--python", sys.executable],
        "stages": ["manual"],
    }
    files = {"bad.py": SNIPPET}
    ordinary = run_pre_commit(
        tmp_path / "ordinary",
        files,
        hook_repository,
        environment,
        hook={"args": ["--ignore", "AGL002"]},
        more_hooks=[confirm],
    )
    assert ordinary.returncode == 0, ordinary.stdout + ordinary.stderr
    assert "--confirmed-only" not in ordinary.stdout  # a manual hook does not run on commit
    manual = run_pre_commit(
        tmp_path / "manual",
        files,
        hook_repository,
        environment,
        more_hooks=[confirm],
        run_args=("autograd-lint-confirm", "--hook-stage", "manual"),
    )
    assert manual.returncode == 1, manual.stdout + manual.stderr
    assert "autograd-lint --confirmed-only" in manual.stdout
    assert f"bad.py:11:9: AGL002 {MESSAGE}" in manual.stdout.splitlines()
    verdict = manual.stdout.splitlines()[manual.stdout.splitlines().index(f"bad.py:11:9: AGL002 {MESSAGE}") + 1]
    assert verdict.strip().startswith("confirmed (")


def readme_yaml_blocks() -> list:
    readme = (REPO / "README.md").read_text()
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", readme, re.S)]


def test_readme_yaml_snippets_parse_and_the_local_hook_matches_the_manifest():
    blocks = readme_yaml_blocks()
    assert len(blocks) >= 5
    manifest = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())[0]
    local = [b for b in blocks if isinstance(b, list) and b and b[0].get("repo") == "local"]
    assert len(local) == 1
    hook = local[0][0]["hooks"][0]
    for key in ("id", "entry", "language", "types_or", "require_serial"):
        assert hook[key] == manifest[key], key
    workflow = next(b for b in blocks if isinstance(b, dict) and "jobs" in b)
    steps = workflow["jobs"]["autograd-lint"]["steps"]
    assert any("--output-format sarif --output-file results.sarif" in step.get("run", "") for step in steps)
    upload = next(step for step in steps if step.get("uses", "").startswith("github/codeql-action/upload-sarif"))
    assert upload["with"]["sarif_file"] == "results.sarif"
