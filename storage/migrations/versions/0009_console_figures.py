"""Indexes the console overview reads its figures through without visiting the rows: a month's meetings
(their branch, group, kind and status beside the time), a meeting's leave by status, and a notice's
messages by status and acknowledgement.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09
"""

from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_meeting_month_figures', 'meeting', ['starts_at', 'org_id', 'group_id', 'kind', 'status'])
    op.create_index('ix_leave_request_meeting_status', 'leave_request', ['meeting_id', 'status'])
    op.create_index('ix_outbox_ref_figures', 'outbox', ['ref', 'kind', 'status', 'acknowledged_at'])


def downgrade() -> None:
    op.drop_index('ix_outbox_ref_figures', table_name='outbox')
    op.drop_index('ix_leave_request_meeting_status', table_name='leave_request')
    op.drop_index('ix_meeting_month_figures', table_name='meeting')
