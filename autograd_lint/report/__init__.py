"""Getting diagnostics out: the output formats, the terminal output and summaries, escaping of what the
linted code controls, the rule pages, and the flake8 plugin."""
