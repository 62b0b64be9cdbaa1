"""autograd-lint: a static linter for custom torch.autograd.Function code and hand-written activations."""

from .api import LintResult, lint_paths, lint_source
from .config import Config, ConfigError, load_config
from .core.diagnostic import Diagnostic, FileError, Severity
from .version import __version__

__all__ = [
    "Config",
    "ConfigError",
    "Diagnostic",
    "FileError",
    "LintResult",
    "Severity",
    "__version__",
    "lint_paths",
    "lint_source",
    "load_config",
]
