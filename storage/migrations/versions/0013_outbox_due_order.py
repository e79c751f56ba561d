"""The outbox sends rows due at the same moment in the order they were written: ix_outbox_due gains id, so that
the claim's ORDER BY due_at, id reads the index in order on PostgreSQL too (SQLite's indexes end with the rowid).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_index('ix_outbox_due')
        batch.create_index('ix_outbox_due', ['status', 'due_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_index('ix_outbox_due')
        batch.create_index('ix_outbox_due', ['status', 'due_at'], unique=False)
