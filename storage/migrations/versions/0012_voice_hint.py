"""When a follower was last told that voice cannot be understood (issue 19): wechat_identity.voice_hint_at,
so the full explanation with the menu comes once per conversation and a short line after it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('wechat_identity') as batch:
        batch.add_column(sa.Column('voice_hint_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('wechat_identity') as batch:
        batch.drop_column('voice_hint_at')
