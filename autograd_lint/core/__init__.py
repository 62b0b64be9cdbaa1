"""What every rule stands on: the parsed file and its syntax helpers, the rule contract, the prefilter, the
engine that runs the rules on a file, the diagnostic it reports and the noqa comments that suppress one.

Nothing here knows a particular analysis (`facts/`), a rule (`rules/` is reached only through its registry),
an output format (`report/`) or the confirm subsystem.
"""
