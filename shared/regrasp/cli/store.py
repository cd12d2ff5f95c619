"""`regrasp store mirror SRC_URL DST_URL`: copy one object store into another (backups)."""

from __future__ import annotations

import typer

from regrasp.cli._app import app

store_app = typer.Typer(no_args_is_help=True, help="Object-store maintenance (backups).")
app.add_typer(store_app, name="store")


@store_app.command("mirror")
def store_mirror(
    source: str = typer.Argument(..., help="Store to copy from: s3://bucket[/prefix] or file://."),
    destination: str = typer.Argument(..., help="Store to copy into (created if needed)."),
    prefix: str = typer.Option("", help="Only the objects whose key starts with this."),
    workers: int = typer.Option(4, min=1, help="Objects copied at a time."),
    allow_empty: bool = typer.Option(
        False, help="Succeed when SOURCE holds no object (by default that is an error)."
    ),
) -> None:
    """Copy every object with its checksum; objects already identical there are skipped.

    s3:// URLs use the REGRASP_S3_* settings (endpoint, keys). Nothing is ever deleted
    from DESTINATION; a re-run after an interruption copies only what is missing."""
    from regrasp.platform.errors import NotFound
    from regrasp.platform.settings import load_settings
    from regrasp.platform.store.objects import store_from_settings
    from regrasp.platform.store.objects.mirror import mirror

    s = load_settings()
    summary = mirror(
        store_from_settings(s, url=source),
        store_from_settings(s, url=destination, create_bucket=True),
        prefix=prefix,
        workers=workers,
    )
    if summary.objects == 0 and not allow_empty:
        # Nearly always a mistyped URL, which a backup or a restore must not pass over.
        raise NotFound(f"no object under {source!r} (prefix {prefix!r}); see --allow-empty")
    typer.echo(
        f"mirrored {summary.objects} objects from {source} to {destination}: "
        f"{summary.copied} copied ({summary.bytes_copied} bytes), {summary.skipped} identical"
    )
