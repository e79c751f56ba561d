"""Member pages: the whole reply kept when it did not fit in chat, for its page.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('inbound_message', sa.Column('full_reply', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('inbound_message', 'full_reply')
