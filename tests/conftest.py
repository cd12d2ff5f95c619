"""Shared fixtures, one plugin module per kind of real component."""

pytest_plugins = [
    "tests.harness.databases",
    "tests.harness.objects",
    "tests.harness.samples",
]
