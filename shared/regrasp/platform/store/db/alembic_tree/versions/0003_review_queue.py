"""Review queue: admin resolutions marked on reviews, per-annotator skips.

`reviews.adjudication` tells an admin's resolution of a double-review disagreement apart
from an annotator's review (agreement statistics count only the latter). `review_skips`
remembers which annotator passed on which item, so that a skipped item is offered to
them again only when nothing else is left (see regrasp.refine.review.queue).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("adjudication", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    op.create_table(
        "review_skips",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("skipped_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["review_items.id"],
            name=op.f("fk_review_skips_item_id_review_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["annotator_id"], ["users.id"], name=op.f("fk_review_skips_annotator_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_skips")),
        sa.UniqueConstraint(
            "item_id", "annotator_id", name=op.f("uq_review_skips_item_id_annotator_id")
        ),
    )
    with op.batch_alter_table("review_skips", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_review_skips_annotator_id"), ["annotator_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("review_skips")
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_column("adjudication")
