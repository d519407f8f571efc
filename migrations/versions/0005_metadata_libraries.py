"""asset metadata, EXIF text and libraries

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("camera_make", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("camera_model", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("meta", sa.JSON(), nullable=True))
    op.create_table(
        "libraries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("excludes", sa.JSON(), nullable=False),
        sa.Column("include_hidden", sa.Boolean(), nullable=False),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.Column("last_scan_at", sa.DateTime(), nullable=True),
        sa.Column("last_scan", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_libraries")),
        sa.UniqueConstraint("path", name=op.f("uq_libraries_path")),
    )


def downgrade() -> None:
    op.drop_table("libraries")
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.drop_column("meta")
        batch_op.drop_column("description")
        batch_op.drop_column("camera_model")
        batch_op.drop_column("camera_make")
