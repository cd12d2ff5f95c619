"""The root Typer application every command module registers on, and the entry point that
runs it (also used by the services' `python -m services.<name>` commands)."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from regrasp.platform.errors import RegraspError

try:  # typer 0.2x vendors click; its exceptions are not click's own classes
    from typer._click import exceptions as _click
except ImportError:  # pragma: no cover - older typer on the real click
    from click import exceptions as _click  # type: ignore[no-redef]

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Regrasp: human-in-the-loop grasp dataset refinement.",
)


def run(cli: typer.Typer) -> None:
    """Run a Typer app as a console entry point.

    Bad input — a `RegraspError`, a pydantic `ValidationError` of an option, an `OSError`
    naming a path — becomes one line on stderr and exit code 1, never a traceback; a usage
    error (unknown option, a value of the wrong type) one line and exit code 2, as click
    would, so every command (ours and the services') fails the same way.
    """
    try:
        code = cli(standalone_mode=False)
    except _click.NoArgsIsHelpError as exc:
        exc.show()  # a bare command prints its help, as click does
        sys.exit(exc.exit_code)
    except _click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "regrasp"
        _fail(f"{exc.format_message()} (see {command} --help)", code=exc.exit_code)
    except _click.ClickException as exc:
        _fail(exc.format_message(), code=exc.exit_code)
    except typer.Abort:
        _fail("aborted", code=130)
    except RegraspError as exc:
        _fail(str(exc))
    except ValidationError as exc:
        _fail(f"invalid {exc.title}: {validation_summary(exc)}")
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")
    else:
        # Without standalone mode click returns what `typer.Exit(code)` carried (or None).
        sys.exit(code if isinstance(code, int) else 0)


def validation_summary(exc: ValidationError) -> str:
    """`field: message; ...` for each problem, on one line."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "value"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _fail(message: str, *, code: int = 1) -> None:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)
