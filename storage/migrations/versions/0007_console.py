"""The staff console: QR sign-in requests, signed-in browsers, passwords, failed sign-ins, the audit log.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('console_scan',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('qr_url', sa.String(length=500), nullable=True),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(), nullable=True),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('nonce'),
    )
    op.create_index('ix_console_scan_client', 'console_scan', ['client'])
    op.create_index('ix_console_scan_created_at', 'console_scan', ['created_at'])

    op.create_table('console_login',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=10), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('ended_reason', sa.String(length=20), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash'),
    )
    op.create_index('ix_console_login_member_id', 'console_login', ['member_id'])

    op.create_table('console_password',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('set_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], ),
    sa.PrimaryKeyConstraint('member_id'),
    )

    op.create_table('console_failure',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('failed_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_console_failure_name', 'console_failure', ['name'])
    op.create_index('ix_console_failure_client', 'console_failure', ['client'])
    op.create_index('ix_console_failure_failed_at', 'console_failure', ['failed_at'])

    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('member_name', sa.String(length=50), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=30), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], ),
    sa.ForeignKeyConstraint(['org_id'], ['organization.id'], ),
    sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_audit_log_at', 'audit_log', ['at'])
    op.create_index('ix_audit_log_member_id', 'audit_log', ['member_id'])
    op.create_index('ix_audit_log_org_id', 'audit_log', ['org_id'])


def downgrade() -> None:
    op.drop_index('ix_audit_log_org_id', table_name='audit_log')
    op.drop_index('ix_audit_log_member_id', table_name='audit_log')
    op.drop_index('ix_audit_log_at', table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_index('ix_console_failure_failed_at', table_name='console_failure')
    op.drop_index('ix_console_failure_client', table_name='console_failure')
    op.drop_index('ix_console_failure_name', table_name='console_failure')
    op.drop_table('console_failure')
    op.drop_table('console_password')
    op.drop_index('ix_console_login_member_id', table_name='console_login')
    op.drop_table('console_login')
    op.drop_index('ix_console_scan_created_at', table_name='console_scan')
    op.drop_index('ix_console_scan_client', table_name='console_scan')
    op.drop_table('console_scan')
