"""Every rule has its test file here, with a snippet table of at least three cases each way."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from autograd_lint.rules import RULES

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("code", sorted(RULES))
def test_rule_has_a_test_file_with_valid_and_invalid_snippets(code):
    name = f"test_{code.lower()}"
    assert (HERE / f"{name}.py").is_file(), f"{code} has no tests/rules/{name}.py"
    module = importlib.import_module(name)
    assert len(module.VALID) >= 3 and len(module.INVALID) >= 3
    assert all(code in source for source in module.INVALID), f"an INVALID snippet of {code} has no {code} marker"
