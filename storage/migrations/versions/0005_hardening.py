"""Hardening: signed requests shared by all processes, binding-code expiry, account-wide binding failures.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from datetime import datetime, timedelta, timezone

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('signed_request',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('body_digest', sa.String(length=64), nullable=False),
    sa.Column('seen_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key'),
    )
    op.create_index('ix_signed_request_seen_at', 'signed_request', ['seen_at'])
    op.create_table('binding_failure',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('failed_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_binding_failure_failed_at', 'binding_failure', ['failed_at'])
    with op.batch_alter_table('member') as batch:
        batch.add_column(sa.Column('binding_code_expires_at', sa.DateTime(), nullable=True))
    # Codes handed out before codes expired get the default 30 days from the upgrade, not for ever.
    expires = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(days=30)
    op.execute(sa.text("UPDATE member SET binding_code_expires_at = :expires WHERE binding_code IS NOT NULL")
               .bindparams(expires=expires))


def downgrade() -> None:
    with op.batch_alter_table('member') as batch:
        batch.drop_column('binding_code_expires_at')
    op.drop_index('ix_binding_failure_failed_at', table_name='binding_failure')
    op.drop_table('binding_failure')
    op.drop_index('ix_signed_request_seen_at', table_name='signed_request')
    op.drop_table('signed_request')
