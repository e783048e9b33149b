"""Helpers shared by the tests (no tests here): the oracle decoder, command-line runs, the GUI's display."""
