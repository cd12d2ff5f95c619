"""The root Typer application every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Regrasp: human-in-the-loop grasp dataset refinement.",
)
