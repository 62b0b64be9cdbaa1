"""Confirm mode: prove each finding by running a small harness under torch in a contained child process.

Rules import `confirm.harness` to declare their recipes; `confirm.session` runs them.
"""
