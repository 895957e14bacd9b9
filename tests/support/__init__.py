"""Helpers shared by tests and benchmarks that are not tests themselves (e.g. the fault proxy)."""
