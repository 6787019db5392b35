"""field reports, sign-in identities, token scopes

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 05:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('identity', sqlmodel.sql.sqltypes.AutoString(length=600), nullable=True))
        batch_op.add_column(sa.Column('last_signin_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('disabled', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_unique_constraint('uq_user_account_identity', ['identity'])
    op.create_table('field_report',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('author_name', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('thread_id', sa.Integer(), nullable=True),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('component', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('severity', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('release', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('distro', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('nodes', sa.Integer(), nullable=True),
    sa.Column('instances', sa.Integer(), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('refs', sa.Text(), nullable=False),
    sa.Column('links', sa.Text(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('source_file', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['user_account.id'], ),
    sa.ForeignKeyConstraint(['thread_id'], ['thread.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('field_report', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_field_report_author_id'), ['author_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_field_report_thread_id'), ['thread_id'], unique=False)
    # Tokens made before scopes were enforced could write; they keep doing so.
    op.execute("UPDATE api_token SET scopes = 'read,write' WHERE scopes = 'read'")


def downgrade() -> None:
    op.execute("UPDATE api_token SET scopes = 'read' WHERE scopes = 'read,write'")
    with op.batch_alter_table('field_report', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_field_report_thread_id'))
        batch_op.drop_index(batch_op.f('ix_field_report_author_id'))
    op.drop_table('field_report')
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.drop_constraint('uq_user_account_identity', type_='unique')
        batch_op.drop_column('disabled')
        batch_op.drop_column('last_signin_at')
        batch_op.drop_column('identity')
