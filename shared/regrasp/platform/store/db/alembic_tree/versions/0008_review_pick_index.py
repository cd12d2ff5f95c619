"""An index that serves the review queue's pick-next query in claim order.

Partial on waiting items (pending, leased) on PostgreSQL; a plain composite index on
SQLite. See `regrasp.platform.store.db.tables.ReviewItem`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 12:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_review_items_pick",
        "review_items",
        ["round_id", sa.text("priority DESC"), "id"],
        postgresql_where=sa.text("state IN ('pending', 'leased')"),
    )


def downgrade() -> None:
    op.drop_index("ix_review_items_pick", table_name="review_items")
