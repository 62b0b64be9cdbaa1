"""Confirm mode: prove each finding by running a small harness under torch in a contained child process.

`builders/` turns a finding into a harness (one module per rule, found by the finding's code: rules do not
import confirm), `runtime/` is the code the harness imports (one recipe module per rule), `session` runs
them under `runner`.
"""
