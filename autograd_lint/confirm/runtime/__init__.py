"""The code a confirm harness imports: `probes` (shared by every recipe) and one recipe module per rule.

See probes.py for why it imports nothing of autograd_lint.
"""
