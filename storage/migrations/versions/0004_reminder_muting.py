"""Reminders a member can turn off: member.reminders_muted and outbox.reminder.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('member') as batch:
        batch.add_column(sa.Column('reminders_muted', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('reminder', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('reminder')
    with op.batch_alter_table('member') as batch:
        batch.drop_column('reminders_muted')
