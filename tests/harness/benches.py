"""Load a `bench/` script as a module, so unit tests can call its functions.

The scripts import their siblings (`from efficacy import welch`), so `bench/` is on
`sys.path` while the module is in use, and off it afterwards.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


@contextmanager
def bench_module(name: str) -> Iterator[ModuleType]:
    """`bench/<name>.py` loaded as module `bench_<name>`."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))
