"""index message.in_reply_to

Each import batch looks up stored children waiting for the batch's new messages as parents
(`in_reply_to IN (...) AND parent_id IS NULL`); without an index that was a scan of every
message per batch: 13 s of a 200k-message import's 62 s of storing.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 15:30:00
"""
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_in_reply_to'), ['in_reply_to'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_in_reply_to'))
