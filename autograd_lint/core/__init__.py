"""What every rule stands on: the parsed file and its syntax helpers, the rule contract, the prefilter, the
diagnostic a rule reports and the noqa comments that suppress one. The engine that runs the rules on a file
sits above, in `engine.py`.

Nothing here knows a particular analysis (`facts/`), a rule (`rules/` is reached only through its registry),
an output format (`report/`) or the confirm subsystem.
"""
