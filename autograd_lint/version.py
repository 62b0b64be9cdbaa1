"""The version, kept where every module can import it without importing the package API."""

__version__ = "0.1.0"
