"""Fault-injection tests (issue 4): kills, outages and flaky endpoints, each ending accounted."""
