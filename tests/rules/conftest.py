import sys
from pathlib import Path

# A rule's test module may use another rule's builders (test_agl012 builds Functions with test_agl007's), as
# tests/ modules import snippets and fixture_markers: tests/conftest.py puts tests/ on the path, this puts tests/rules/.
sys.path.insert(0, str(Path(__file__).resolve().parent))
