"""A round's run state gets its own columns: `run` (timings, training units, the apply
request, the state it failed in) and `retry` (the streak of a step whose service could not
be reached), both until now kept under the private key `_run` of the user's `config`.

Old rows are migrated: `config["_run"]` moves to `run`, its `retry` entry to `retry`, and
`config` keeps only the round's options. Downgrade puts them back.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 18:00:00.000000
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_KEY = "_run"

_rounds = sa.table(
    "rounds",
    sa.column("id", sa.Integer),
    sa.column("config", sa.JSON),
    sa.column("run", sa.JSON),
    sa.column("retry", sa.JSON),
)


def upgrade() -> None:
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("retry", sa.JSON(), nullable=True))
    bind = op.get_bind()
    for row in bind.execute(sa.select(_rounds.c.id, _rounds.c.config)).all():
        config = dict(_loaded(row.config) or {})
        run = dict(config.pop(_OLD_KEY, None) or {})
        retry = run.pop("retry", None)
        bind.execute(
            _rounds.update()
            .where(_rounds.c.id == row.id)
            .values(config=config, run=run, retry=retry)
        )


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_rounds.c.id, _rounds.c.config, _rounds.c.run, _rounds.c.retry))
    for row in rows.all():
        run = dict(_loaded(row.run) or {})
        if row.retry is not None:
            run["retry"] = _loaded(row.retry)
        config = {**(_loaded(row.config) or {}), _OLD_KEY: run}
        bind.execute(_rounds.update().where(_rounds.c.id == row.id).values(config=config))
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.drop_column("retry")
        batch_op.drop_column("run")


def _loaded(value: Any) -> Any:
    """A JSON column's value (some drivers hand back the text)."""
    return json.loads(value) if isinstance(value, str) else value
