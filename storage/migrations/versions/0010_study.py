"""Study (issue 16): study items (from content/study files, and later from staff), who marked each studied,
and each member's study profile (study reminders muted, 送学上门).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('study_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('org_path', sa.String(length=500), nullable=False),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('link', sa.String(length=500), nullable=False),
    sa.Column('doc', sa.String(length=60), nullable=False),
    sa.Column('minutes', sa.Integer(), nullable=False),
    sa.Column('questions', sa.Text(), server_default='[]', nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_index('ix_study_item_starts_on', 'study_item', ['starts_on'])

    op.create_table('study_done',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('done_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['study_item.id'], ),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('item_id', 'member_id', name='uq_study_done')
    )
    op.create_index('ix_study_done_item_id', 'study_done', ['item_id'])
    op.create_index('ix_study_done_member_id', 'study_done', ['member_id'])

    op.create_table('study_profile',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('muted', sa.Boolean(), nullable=False),
    sa.Column('at_home', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], ),
    sa.PrimaryKeyConstraint('member_id')
    )


def downgrade() -> None:
    op.drop_table('study_profile')
    op.drop_index('ix_study_done_member_id', table_name='study_done')
    op.drop_index('ix_study_done_item_id', table_name='study_done')
    op.drop_table('study_done')
    op.drop_index('ix_study_item_starts_on', table_name='study_item')
    op.drop_table('study_item')
