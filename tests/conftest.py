"""Shared fixtures, one plugin module per kind of real component."""

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.objects",
    "tests.fixtures.samples",
]
