"""`regrasp gc`: find (and with --delete remove) what no database row refers to.

Runs straight on the database and object store the settings name (like `regrasp db`), so
an operator can run it with the services stopped. The rules are `regrasp.data.gc`'s.
"""

from __future__ import annotations

import typer

from regrasp.cli._app import app


@app.command("gc")
def gc(
    delete: bool = typer.Option(False, "--delete", help="Remove what is found (default: list)."),
    force: bool = typer.Option(
        False, "--force", help="Run although rounds, imports, jobs or campaigns are running."
    ),
    min_age: float = typer.Option(
        3600.0,
        "--min-age",
        min=0.0,
        help="Seconds an unreferenced object must be old to count (untracked writers).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Orphan objects (failed models, abandoned uploads, stale caches and exports) and
    stale rows; a dry run unless --delete. Refuses while work is running, unless --force."""
    import json
    from datetime import timedelta

    from regrasp.data.gc import collect_garbage
    from regrasp.platform.settings import load_settings
    from regrasp.platform.store.db.engine import make_engine, session_scope
    from regrasp.platform.store.objects import store_from_settings

    settings = load_settings()
    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            report = collect_garbage(
                session,
                store_from_settings(settings),
                delete=delete,
                force=force,
                min_age=timedelta(seconds=min_age),
            )
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1))
        return
    verb = "removed" if report.deleted else "would remove"
    for orphan in report.objects:
        typer.echo(f"{verb} {orphan.key} ({orphan.size} B): {orphan.reason}")
    fixed = "fixed" if report.deleted else "would fix"
    for row in report.rows:
        typer.echo(f"{fixed} {row.table} {row.id} ({row.fix}): {row.reason}")
    typer.echo(
        f"{len(report.objects)} orphan objects ({report.bytes} B), {len(report.rows)} stale "
        f"rows; {report.scanned} objects scanned, {report.young} unreferenced but younger than "
        f"{min_age:g} s kept, {report.unmanaged} outside Regrasp's folders left alone"
        + ("" if report.deleted or report.clean else "; run with --delete to remove them")
    )
