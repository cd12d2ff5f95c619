"""How `regrasp up` frames its summary on the console.

The words come from `regrasp.workflows.rounds.describe`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["frame"]


def frame(lines: Sequence[str], *, title: str = "regrasp") -> str:
    """The lines in a box, so a summary stands out from what was printed before it."""
    width = max([len(line) for line in lines] + [len(title) + 2])
    top = f"┌─ {title} " + "─" * (width - len(title) - 1) + "┐"
    body = [f"│ {line.ljust(width)} │" for line in lines]
    bottom = "└" + "─" * (width + 2) + "┘"
    return "\n".join([top, *body, bottom])
