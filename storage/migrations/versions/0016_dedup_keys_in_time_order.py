"""The inbound log's dedup keys are led by time: `msg:<MsgId, 20 digits>:<openid>` and `evt:<CreateTime, 12 digits>:<digest>`.

Led by the sender (`msg:<openid>:<MsgId>`) or a digest (`evt:<digest>`), every claim inserted its key at a random
page of the unique index, and a batch of claims wrote as many pages as it had rows (bot/messages.py,
Message.dedup_key). The keys already stored are rewritten here to the new form, so that WeChat's retry of a
message claimed before the upgrade still finds it and gets its stored reply instead of being handled again. Rows
whose key has neither old form (none that the service wrote) are left as they are.

Serving processes must be stopped before this runs: an old process still serving afterwards would store keys of the
old form, and a retry of one of its messages reaching a new process would be handled a second time.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from alembic import op


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

# `msg:` + openid + `:` + MsgId (at most 20 digits, the webhook refuses longer).
_OLD_MESSAGE = ("dedup_key LIKE 'msg:%' AND substr(dedup_key, 5, length(openid) + 1) = openid || ':' "
                "AND length(dedup_key) - length(openid) - 5 BETWEEN 1 AND 20")
# `evt:` + a sha256 in hex.
_OLD_EVENT = "dedup_key LIKE 'evt:%' AND length(dedup_key) = 68"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        stored_time = "(payload::json ->> 'created_at')"
        msg_id = "lpad(substr(dedup_key, length(openid) + 6), 20, '0')"
        created = f"lpad({stored_time}, 12, '0')"
    else:
        stored_time = "CAST(json_extract(payload, '$.created_at') AS TEXT)"
        msg_id = "substr('00000000000000000000' || substr(dedup_key, length(openid) + 6), -20, 20)"
        created = f"substr('000000000000' || {stored_time}, -12, 12)"
    op.execute(f"UPDATE inbound_message SET dedup_key = 'msg:' || {msg_id} || ':' || openid WHERE {_OLD_MESSAGE}")
    # The event's CreateTime is in its stored payload (Message.to_payload), as every event the webhook logged has.
    op.execute(f"UPDATE inbound_message SET dedup_key = 'evt:' || {created} || ':' || substr(dedup_key, 5) "
               f"WHERE {_OLD_EVENT} AND {stored_time} IS NOT NULL AND length({stored_time}) <= 12")


def downgrade() -> None:
    # msg:<20 digits>:<openid> back to msg:<openid>:<MsgId> (MsgIds have no leading zeros), evt:<12>:<digest> to evt:<digest>.
    digits = "substr(dedup_key, 5, 20)"
    op.execute(f"UPDATE inbound_message SET dedup_key = 'msg:' || openid || ':' || "
               f"CASE WHEN ltrim({digits}, '0') = '' THEN '0' ELSE ltrim({digits}, '0') END "
               f"WHERE dedup_key LIKE 'msg:%' AND substr(dedup_key, 25, 1) = ':' "
               f"AND substr(dedup_key, 26) = openid")
    op.execute("UPDATE inbound_message SET dedup_key = 'evt:' || substr(dedup_key, 18) "
               "WHERE dedup_key LIKE 'evt:%' AND length(dedup_key) = 81")
