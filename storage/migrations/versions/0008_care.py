"""Care (五必访): cases, the reports about them, visits, their photos and voices, and each member's care
profile (the hardship register).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('care_case',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('subject_name', sa.String(length=50), nullable=False),
    sa.Column('occasion', sa.String(length=20), nullable=False),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('campaign', sa.String(length=30), nullable=True),
    sa.Column('hidden_from_reporter', sa.Boolean(), nullable=False),
    sa.Column('visitor_id', sa.Integer(), nullable=True),
    sa.Column('deadline', sa.DateTime(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('opened_by', sa.Integer(), nullable=True),
    sa.Column('opened_at', sa.DateTime(), nullable=False),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('reminded_at', sa.DateTime(), nullable=True),
    sa.Column('escalated_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], ),
    sa.ForeignKeyConstraint(['opened_by'], ['member.id'], ),
    sa.ForeignKeyConstraint(['org_id'], ['organization.id'], ),
    sa.ForeignKeyConstraint(['visitor_id'], ['member.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign', 'member_id', name='uq_care_case_campaign_member')
    )
    op.create_index('ix_care_case_member_id', 'care_case', ['member_id'])
    op.create_index('ix_care_case_opened_at', 'care_case', ['opened_at'])
    op.create_index('ix_care_case_org_id', 'care_case', ['org_id'])
    op.create_index('ix_care_case_status', 'care_case', ['status'])
    op.create_index('ix_care_case_visitor_id', 'care_case', ['visitor_id'])

    op.create_table('care_profile',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('hardship_level', sa.String(length=20), nullable=False),
    sa.Column('hardship_reason', sa.String(length=500), nullable=False),
    sa.Column('hardship_since', sa.Date(), nullable=True),
    sa.Column('old_cadre', sa.Boolean(), nullable=False),
    sa.Column('festival_visits', sa.Boolean(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('updated_by', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['member.id'], ),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], ),
    sa.ForeignKeyConstraint(['updated_by'], ['member.id'], ),
    sa.PrimaryKeyConstraint('member_id')
    )
    op.create_table('care_report',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('reporter_id', sa.Integer(), nullable=False),
    sa.Column('details', sa.Text(), server_default='', nullable=False),
    sa.Column('reported_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['care_case.id'], ),
    sa.ForeignKeyConstraint(['reporter_id'], ['member.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_care_report_case_id', 'care_report', ['case_id'])
    op.create_index('ix_care_report_reporter_id', 'care_report', ['reporter_id'])

    op.create_table('care_visit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('visited_at', sa.DateTime(), nullable=False),
    sa.Column('visitors', sa.String(length=200), nullable=False),
    sa.Column('notes', sa.Text(), server_default='', nullable=False),
    sa.Column('given', sa.String(length=200), nullable=False),
    sa.Column('amount', sa.String(length=50), nullable=False),
    sa.Column('amount_fen', sa.Integer(), nullable=True),
    sa.Column('fund', sa.String(length=100), nullable=False),
    sa.Column('recorded_by', sa.Integer(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['care_case.id'], ),
    sa.ForeignKeyConstraint(['recorded_by'], ['member.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_care_visit_case_id', 'care_visit', ['case_id'])
    op.create_index('ix_care_visit_visited_at', 'care_visit', ['visited_at'])

    op.create_table('care_media',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('report_id', sa.Integer(), nullable=True),
    sa.Column('visit_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('media_id', sa.String(length=200), nullable=False),
    sa.Column('pic_url', sa.String(length=500), nullable=False),
    sa.Column('added_by', sa.Integer(), nullable=False),
    sa.Column('added_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['added_by'], ['member.id'], ),
    sa.ForeignKeyConstraint(['case_id'], ['care_case.id'], ),
    sa.ForeignKeyConstraint(['report_id'], ['care_report.id'], ),
    sa.ForeignKeyConstraint(['visit_id'], ['care_visit.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_care_media_case_id', 'care_media', ['case_id'])



def downgrade() -> None:
    op.drop_index('ix_care_media_case_id', table_name='care_media')

    op.drop_table('care_media')
    op.drop_index('ix_care_visit_visited_at', table_name='care_visit')
    op.drop_index('ix_care_visit_case_id', table_name='care_visit')

    op.drop_table('care_visit')
    op.drop_index('ix_care_report_reporter_id', table_name='care_report')
    op.drop_index('ix_care_report_case_id', table_name='care_report')

    op.drop_table('care_report')
    op.drop_table('care_profile')
    op.drop_index('ix_care_case_visitor_id', table_name='care_case')
    op.drop_index('ix_care_case_status', table_name='care_case')
    op.drop_index('ix_care_case_org_id', table_name='care_case')
    op.drop_index('ix_care_case_opened_at', table_name='care_case')
    op.drop_index('ix_care_case_member_id', table_name='care_case')

    op.drop_table('care_case')
