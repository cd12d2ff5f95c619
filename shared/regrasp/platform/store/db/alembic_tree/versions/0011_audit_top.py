"""Audit items of the census of the highest-ranked unflagged images are told apart from the
random sample (`review_items.audit_top`): the noise estimate treats them as two strata.

Existing items were all flagged items or random-sample audits: the column is added false.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 17:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("audit_top", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.drop_column("audit_top")
