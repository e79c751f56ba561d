"""Messages that may wait for the member's next message (issue 16): outbox.waits (the line the reply to that
message carries), outbox.expires_at (after it the line is no longer given), and a partial index of the
waiting rows by openid, read on every message a member sends.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10
"""

from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

WAITING = sa.text("status = 'waiting'")


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('waits', sa.Text(), nullable=True))
        batch.add_column(sa.Column('expires_at', sa.DateTime(), nullable=True))
    op.create_index('ix_outbox_waiting', 'outbox', ['openid'], sqlite_where=WAITING, postgresql_where=WAITING)


def downgrade() -> None:
    op.drop_index('ix_outbox_waiting', table_name='outbox')
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('expires_at')
        batch.drop_column('waits')
