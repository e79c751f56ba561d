"""Inbound messages are indexed by status only while they are being handled: the index on status becomes partial
(WHERE status = 'processing'). Orphan recovery, its one reader, looks only for those, in id order (which the
index keeps); the full index made every message's finish move its entry from 'processing' to 'done'. The index on
openid goes: no query reads messages by sender, and it put every claim at a random place in it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

PROCESSING = sa.text("status = 'processing'")


def upgrade() -> None:
    op.drop_index('ix_inbound_message_openid', table_name='inbound_message')
    op.drop_index('ix_inbound_message_status', table_name='inbound_message')
    op.create_index('ix_inbound_message_processing', 'inbound_message', ['status'], unique=False,
                    sqlite_where=PROCESSING, postgresql_where=PROCESSING)


def downgrade() -> None:
    op.drop_index('ix_inbound_message_processing', table_name='inbound_message')
    op.create_index('ix_inbound_message_status', 'inbound_message', ['status'], unique=False)
    op.create_index('ix_inbound_message_openid', 'inbound_message', ['openid'], unique=False)
