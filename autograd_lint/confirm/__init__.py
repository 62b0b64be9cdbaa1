"""Confirm mode: prove each finding by running a small harness under torch in a contained child process.

`builders/` turns a finding into a harness (one module per rule, found by the finding's code: rules do not
import confirm), `runtime/` is the code the harness imports (one recipe module per rule), `session` runs
them under `runner`.
"""

# The devices harnesses can build their tensors on (`--device`). Here, not in `runner`, so that the command
# line's options are built without importing the confirm machinery.
DEVICES = ("cpu", "cuda")
