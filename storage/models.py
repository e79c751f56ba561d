"""The tables. One class per concept; queries live beside them in the other storage modules.

Times are stored as naive UTC (the same on SQLite and PostgreSQL) and come back as aware UTC.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


# How SQLAlchemy's SQLite dialect stores a DATETIME as text (its default storage format, positional).
SQLITE_DATETIME_TEXT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


class UTCDateTime(TypeDecorator):
    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect):
        return None if value is None else value.replace(tzinfo=timezone.utc)

    # On SQLite each of the two steps above is followed (or preceded) by the dialect's own conversion to or from
    # text; every message binds and reads a dozen times, so there the two are done in one function each (the
    # same text and the same values: tests/bot/test_dispatch.py compares them with SQLAlchemy's).

    def bind_processor(self, dialect):
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        utc = timezone.utc

        def as_text(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            if value.tzinfo is not utc:
                value = value.astimezone(utc)
            return SQLITE_DATETIME_TEXT % (value.year, value.month, value.day, value.hour, value.minute,
                                           value.second, value.microsecond)
        return as_text

    def result_processor(self, dialect, coltype):
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        utc, parse = timezone.utc, datetime.fromisoformat

        def from_text(value: str | None) -> datetime | None:
            return None if value is None else parse(value).replace(tzinfo=utc)
        return from_text


def utc_column(**kwargs) -> sa.Column:
    return sa.Column(UTCDateTime(), **kwargs)


class OrgType(StrEnum):
    COMMITTEE = "党委"  # county committee or township committee
    GENERAL_BRANCH = "党总支"
    BRANCH = "党支部"
    GROUP = "党小组"


class Role(StrEnum):
    MEMBER = "党员"
    SECRETARY = "书记"
    DEPUTY_SECRETARY = "副书记"
    COMMITTEE_MEMBER = "委员"
    STAFF = "组织员"
    ADMIN = "管理员"


# Roles that run a branch (call meetings, send notices to it).
BRANCH_LEADERS = frozenset({Role.SECRETARY, Role.DEPUTY_SECRETARY})
# Roles that sit on the branch committee (支委).
COMMITTEE_ROLES = frozenset({Role.SECRETARY, Role.DEPUTY_SECRETARY, Role.COMMITTEE_MEMBER})
# Organization staff: their scope is the whole subtree of their organization.
STAFF_ROLES = frozenset({Role.STAFF, Role.ADMIN})


class MemberCategory(StrEnum):
    FULL = "正式党员"
    PROBATIONARY = "预备党员"


class Organization(SQLModel, table=True):
    __tablename__ = "organization"

    id: int | None = Field(default=None, primary_key=True)
    parent_id: int | None = Field(default=None, foreign_key="organization.id", index=True)
    name: str = Field(max_length=100)
    org_type: str = Field(max_length=10)
    # Names from the root, joined by "/": what staff type in import files and on the command line.
    path: str = Field(max_length=500, unique=True)
    # Ids from the root as "/1/5/12/": a subtree is every row whose tree_path starts with this one's.
    tree_path: str = Field(default="", max_length=200, index=True)


class Member(SQLModel, table=True):
    __tablename__ = "member"
    __table_args__ = (sa.UniqueConstraint("org_id", "name", "phone", name="uq_member_identity"),)

    id: int | None = Field(default=None, primary_key=True)
    # The branch (or the township/county organization, for staff) the member belongs to.
    org_id: int = Field(foreign_key="organization.id", index=True)
    group_id: int | None = Field(default=None, foreign_key="organization.id")
    name: str = Field(max_length=50)
    # "" when unknown: part of the identity key, so it must not be NULL.
    phone: str = Field(default="", max_length=20)
    role: str = Field(default=Role.MEMBER.value, max_length=10)
    birth_date: date | None = None
    join_date: date | None = None
    category: str = Field(default=MemberCategory.FULL.value, max_length=10)
    hardship: bool = False
    away_from_home: bool = False
    # The member turned reminders off (关闭提醒): notices and meeting calls still come, reminders do not.
    reminders_muted: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # One-time code handed out by staff; cleared once the member binds their WeChat.
    binding_code: str | None = Field(default=None, max_length=12, unique=True)
    # After this a binding code no longer binds (新绑定码 gives a fresh one); NULL: no expiry.
    binding_code_expires_at: datetime | None = Field(default=None, sa_column=utc_column())
    created_at: datetime = Field(sa_column=utc_column(nullable=False))
    updated_at: datetime = Field(sa_column=utc_column(nullable=False))


class WeChatIdentity(SQLModel, table=True):
    """A follower of the official account, bound to a member or not."""

    __tablename__ = "wechat_identity"

    openid: str = Field(primary_key=True, max_length=64)
    member_id: int | None = Field(default=None, foreign_key="member.id", unique=True)
    subscribed: bool = True
    first_seen_at: datetime = Field(sa_column=utc_column(nullable=False))
    # The start of the 48-hour customer-service window WeChat grants after a user's message.
    last_message_at: datetime | None = Field(default=None, sa_column=utc_column())
    bound_at: datetime | None = Field(default=None, sa_column=utc_column())
    unsubscribed_at: datetime | None = Field(default=None, sa_column=utc_column())
    failed_bind_attempts: int = 0
    bind_locked_until: datetime | None = Field(default=None, sa_column=utc_column())
    # Customer-service messages sent since last_message_at (WeChat allows 5 per 48-hour window).
    window_sent: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # When this follower was last told that their voice could not be understood (with the menu).
    voice_hint_at: datetime | None = Field(default=None, sa_column=utc_column())


class InboundStatus(StrEnum):
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


# The predicate of ix_inbound_message_processing; orphan recovery names the status as this literal to use the index.
INBOUND_PROCESSING = sa.text(f"status = '{InboundStatus.PROCESSING.value}'")


class InboundMessage(SQLModel, table=True):
    """Every message and event, recorded before it is handled; dedup_key makes handling exactly-once."""

    __tablename__ = "inbound_message"
    # Only the messages still being handled are indexed by status: orphan recovery looks for nothing else, and an
    # index of every status made each message's finish move its entry, a page more written per commit (a third of
    # the finish's commit on SQLite). Nothing looks messages up by sender, so openid has no index: it put every
    # claim somewhere at random in an index nobody read (a batch of claims wrote 31 pages, now 18; migration 0014).
    __table_args__ = (sa.Index("ix_inbound_message_processing", "status", sqlite_where=INBOUND_PROCESSING,
                               postgresql_where=INBOUND_PROCESSING),)

    id: int | None = Field(default=None, primary_key=True)
    dedup_key: str = Field(max_length=200, unique=True)
    openid: str = Field(max_length=64)
    kind: str = Field(max_length=30)
    # The parsed message as JSON, so an orphaned claim can be handled again after a crash.
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    status: str = Field(default=InboundStatus.PROCESSING.value, max_length=12)
    received_at: datetime = Field(sa_column=utc_column(nullable=False))
    claimed_at: datetime = Field(sa_column=utc_column(nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=utc_column())
    # The handler's reply as a JSON list of texts; the first one is the passive reply.
    reply: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    # The whole reply when it did not fit in chat (its last part links to a page showing this).
    full_reply: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    # "push" when the handler outran the reply budget and the reply was sent later as customer-service
    # messages; NULL when it went back in the HTTP response (retries then get it again).
    reply_mode: str | None = Field(default=None, max_length=10)
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))


class SignedRequest(SQLModel, table=True):
    """A signed webhook query seen within the timestamp window, with the digest of the body it came with.

    Shared by every process and kept across restarts: in plaintext mode the signature does not cover
    the body, so a captured query string replayed with another body is refused here."""

    __tablename__ = "signed_request"

    # sha256 of timestamp, nonce and signature: fixed length whatever the query holds.
    key: str = Field(primary_key=True, max_length=64)
    body_digest: str = Field(max_length=64)
    seen_at: datetime = Field(sa_column=utc_column(nullable=False, index=True))


class BindingFailure(SQLModel, table=True):
    """A failed binding attempt, from any follower: the account-wide limit counts these."""

    __tablename__ = "binding_failure"

    id: int | None = Field(default=None, primary_key=True)
    openid: str = Field(max_length=64)
    failed_at: datetime = Field(sa_column=utc_column(nullable=False, index=True))


class DialogState(SQLModel, table=True):
    """Where a user is in a multi-step dialog."""

    __tablename__ = "dialog_state"

    openid: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=50)
    step: str = Field(max_length=50)
    data: str = Field(default="{}", sa_column=sa.Column(sa.Text, nullable=False))
    expires_at: datetime = Field(sa_column=utc_column(nullable=False))


class AccessToken(SQLModel, table=True):
    """The API access token, shared by every process so that only one of them fetches it."""

    __tablename__ = "access_token"

    app_id: str = Field(primary_key=True, max_length=64)
    token: str | None = Field(default=None, max_length=600)
    expires_at: datetime | None = Field(default=None, sa_column=utc_column())
    # A process refreshing the token holds this lease; the others wait for its result.
    refresh_lease_until: datetime | None = Field(default=None, sa_column=utc_column())


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for its due time (quiet hours, backoff) or a worker
    SENDING = "sending"  # a worker holds it until lease_until
    SENT = "sent"
    FAILED = "failed"  # permanently: the reason is in error
    # No channel now (the member's 48-hour window is closed and no template fits), but the message said it
    # may wait: its `waits` line goes with the reply to the member's next message, until expires_at. Never a
    # failure; reports count it with the pending.
    WAITING = "waiting"


# The predicate of ix_outbox_waiting; a query must name the status as this literal to use the index.
OUTBOX_WAITING = sa.text("status = 'waiting'")


class OutboxMessage(SQLModel, table=True):
    """One message to one person, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"
    # ix_outbox_ref_figures: a notice's figures counted from the index alone (storage.notices.totals_under).
    # ix_outbox_waiting: a member's waiting rows, looked up on every message they send; partial, so the
    # rows of a broadcast (pending, then sent) never enter it. It holds status too, though every entry's is
    # 'waiting': SQLite's planner, without statistics, matched those lookups' status = 'waiting' to ix_outbox_due
    # instead, and read every waiting row of every member on every message (600 µs with 5,000 waiting; migration
    # 0015). Matching two columns here, it picks this one.
    __table_args__ = (sa.Index("ix_outbox_due", "status", "due_at", "id"),
                      sa.Index("ix_outbox_ref_figures", "ref", "kind", "status", "acknowledged_at"),
                      sa.Index("ix_outbox_waiting", "openid", "status", sqlite_where=OUTBOX_WAITING,
                               postgresql_where=OUTBOX_WAITING))

    id: int | None = Field(default=None, primary_key=True)
    # One row per (message, member), e.g. "notice:12:345": a retried enqueue adds nothing.
    idempotency_key: str = Field(max_length=120, unique=True)
    # What sort of message (notice, meeting, study, care, reply…): picks the template.
    kind: str = Field(max_length=30)
    # The feature record it belongs to, e.g. "notice:12", for reports.
    ref: str | None = Field(default=None, max_length=60, index=True)
    member_id: int | None = Field(default=None, foreign_key="member.id", index=True)
    openid: str | None = Field(default=None, max_length=64)
    text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    # The short fields for the template channel, as JSON (each at most 20 characters, no line breaks).
    template_data: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    urgent: bool = False
    # A reminder (a meeting's day-before and hour-before message, a notice's follow-up, a compliance
    # reminder): not sent to a member who turned reminders off.
    reminder: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    status: str = Field(default=OutboxStatus.PENDING.value, max_length=10)
    channel: str | None = Field(default=None, max_length=10)
    attempts: int = 0
    due_at: datetime = Field(sa_column=utc_column(nullable=False))
    lease_until: datetime | None = Field(default=None, sa_column=utc_column())
    created_at: datetime = Field(sa_column=utc_column(nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=utc_column())
    acknowledged_at: datetime | None = Field(default=None, sa_column=utc_column())
    error_code: int | None = None
    error: str | None = Field(default=None, max_length=300)
    # What the member is told in the reply to their next message when no channel reaches them now
    # ("您有一条本周学习内容，回复 学习 查看"); None: the message cannot wait and fails instead.
    waits: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    # After this a waiting row is no longer handed over (a study item's period has ended); None: never.
    expires_at: datetime | None = Field(default=None, sa_column=utc_column())


class Notice(SQLModel, table=True):
    """A notice a secretary or organization staff sent; its recipients are outbox rows with ref notice:<id>."""

    __tablename__ = "notice"

    id: int | None = Field(default=None, primary_key=True)
    sender_id: int = Field(foreign_key="member.id", index=True)
    # The organization whose members (or subtree) it went to.
    org_id: int = Field(foreign_key="organization.id", index=True)
    audience: str = Field(max_length=200)
    text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    urgent: bool = False
    recipients: int = 0
    created_at: datetime = Field(sa_column=utc_column(nullable=False))
    report_due_at: datetime = Field(sa_column=utc_column(nullable=False))
    reported_at: datetime | None = Field(default=None, sa_column=utc_column())
    reminded_at: datetime | None = Field(default=None, sa_column=utc_column())


class MeetingKind(StrEnum):
    GENERAL = "支部党员大会"
    COMMITTEE = "支委会"
    GROUP = "党小组会"
    LECTURE = "党课"
    THEME_DAY = "主题党日"
    LIFE = "组织生活会"
    REVIEW = "民主评议党员"


class MeetingStatus(StrEnum):
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"


class Meeting(SQLModel, table=True):
    """A meeting a branch holds; its attendance, leave requests and photos are the audit evidence."""

    __tablename__ = "meeting"
    # The console's figures read a month's meetings from this index alone (handlers/meetings/overview_cache.py).
    __table_args__ = (sa.Index("ix_meeting_month_figures", "starts_at", "org_id", "group_id", "kind", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organization.id", index=True)  # the branch
    group_id: int | None = Field(default=None, foreign_key="organization.id")  # for 党小组会
    kind: str = Field(max_length=10)
    topic: str = Field(max_length=200)
    place: str = Field(max_length=100)
    # Where check-in by shared location counts (the meeting place), when known.
    latitude: float | None = None
    longitude: float | None = None
    radius_m: int = 300
    starts_at: datetime = Field(sa_column=utc_column(nullable=False, index=True))
    status: str = Field(default=MeetingStatus.SCHEDULED.value, max_length=10)
    called_by: int = Field(foreign_key="member.id")
    # Six digits members type to check in (签到 123456); unique among meetings.
    checkin_code: str = Field(max_length=6, unique=True)
    created_at: datetime = Field(sa_column=utc_column(nullable=False))
    updated_at: datetime = Field(sa_column=utc_column(nullable=False))
    # The meeting record (会议记录), added by the secretary afterwards.
    host: str | None = Field(default=None, max_length=50)
    recorder: str | None = Field(default=None, max_length=50)
    minutes: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    resolutions: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    votes: str | None = Field(default=None, max_length=200)
    record_added_at: datetime | None = Field(default=None, sa_column=utc_column())


class CheckInMethod(StrEnum):
    CODE = "code"
    QR = "qr"
    LOCATION = "location"
    MENU = "menu"
    PROXY = "proxy"  # the secretary signed in a member without a phone (代签)


class Attendance(SQLModel, table=True):
    """A member's check-in at a meeting: the row on the sign-in sheet."""

    __tablename__ = "attendance"
    __table_args__ = (sa.UniqueConstraint("meeting_id", "member_id", name="uq_attendance"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    member_id: int = Field(foreign_key="member.id")
    checked_in_at: datetime = Field(sa_column=utc_column(nullable=False))
    method: str = Field(max_length=10)
    late: bool = False
    proxy_by: int | None = Field(default=None, foreign_key="member.id")


class LeaveStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"


class LeaveRequest(SQLModel, table=True):
    __tablename__ = "leave_request"
    __table_args__ = (sa.UniqueConstraint("meeting_id", "member_id", name="uq_leave_request"),
                      sa.Index("ix_leave_request_meeting_status", "meeting_id", "status"))

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    member_id: int = Field(foreign_key="member.id")
    reason: str = Field(max_length=200)
    status: str = Field(default=LeaveStatus.PENDING.value, max_length=10)
    requested_at: datetime = Field(sa_column=utc_column(nullable=False))
    decided_at: datetime | None = Field(default=None, sa_column=utc_column())
    decided_by: int | None = Field(default=None, foreign_key="member.id")


class MeetingPhoto(SQLModel, table=True):
    """A photo sent to the account for a meeting (the "images" of the audit)."""

    __tablename__ = "meeting_photo"

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    media_id: str = Field(max_length=200)
    pic_url: str = Field(default="", max_length=500)
    added_by: int = Field(foreign_key="member.id")
    added_at: datetime = Field(sa_column=utc_column(nullable=False))


# ---------------------------------------------------------------- the staff console (handlers/console)


class ConsoleScan(SQLModel, table=True):
    """A one-time request to sign a browser in by scanning a QR code (scene "login:<nonce>"). The browser
    keeps the nonce in its session; a staff member's scan confirms the request for them, and the same
    browser's next look signs it in, once."""

    __tablename__ = "console_scan"

    id: int | None = Field(default=None, primary_key=True)
    nonce: str = Field(max_length=64, unique=True)
    # The address that asked for it (how many QR codes one address may ask for is limited).
    client: str = Field(default="", max_length=64, index=True)
    created_at: datetime = Field(sa_column=utc_column(nullable=False, index=True))
    expires_at: datetime = Field(sa_column=utc_column(nullable=False))
    # The QR code's image address, once the platform made it.
    qr_url: str | None = Field(default=None, max_length=500)
    member_id: int | None = Field(default=None, foreign_key="member.id")
    confirmed_at: datetime | None = Field(default=None, sa_column=utc_column())
    # Set once, when the browser signed in with it (or when 退出后台 withdrew the confirmation).
    used_at: datetime | None = Field(default=None, sa_column=utc_column())


class ConsoleLogin(SQLModel, table=True):
    """One signed-in browser. Its cookie holds a random token whose digest is here; ending the row (sign-out,
    退出后台, idle time) ends the session whatever the cookie says."""

    __tablename__ = "console_login"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    method: str = Field(max_length=10)  # "scan" | "password"
    # The token every form of this login carries (CSRF).
    csrf_token: str = Field(max_length=64)
    client: str = Field(default="", max_length=64)
    created_at: datetime = Field(sa_column=utc_column(nullable=False))
    last_seen_at: datetime = Field(sa_column=utc_column(nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=utc_column())
    ended_reason: str | None = Field(default=None, max_length=20)


class ConsolePassword(SQLModel, table=True):
    """A staff member's console password (argon2), for machines where scanning is impossible."""

    __tablename__ = "console_password"

    member_id: int = Field(foreign_key="member.id", primary_key=True)
    password_hash: str = Field(max_length=200)
    set_at: datetime = Field(sa_column=utc_column(nullable=False))


class ConsoleFailure(SQLModel, table=True):
    """A failed password sign-in: the name typed (known or not) and the address it came from."""

    __tablename__ = "console_failure"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50, index=True)
    client: str = Field(max_length=64, index=True)
    failed_at: datetime = Field(sa_column=utc_column(nullable=False, index=True))


class AuditEntry(SQLModel, table=True):
    """What staff did in the console (signing in and out, exports, imports, changes), for the county."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=utc_column(nullable=False, index=True))
    member_id: int | None = Field(default=None, foreign_key="member.id", index=True)
    # The member's name and organization when it happened (they may change later).
    member_name: str = Field(default="", max_length=50)
    org_id: int | None = Field(default=None, foreign_key="organization.id", index=True)
    action: str = Field(max_length=30)
    detail: str = Field(default="", max_length=500)
    client: str = Field(default="", max_length=64)


# ---------------------------------------------------------------- care (五必访)


class CareStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class CareSource(StrEnum):
    REPORT = "report"  # a member reported it in chat
    SECRETARY = "secretary"  # a branch leader opened it
    CAMPAIGN = "campaign"  # a festival campaign opened it
    VISIT = "visit"  # a visit recorded without a case: the case exists to hold it, closed at once


class CareCase(SQLModel, table=True):
    """One occasion someone should be visited for: whom, why, who visits, by when. What reporters wrote is
    in their reports (CareReport). `subject_name` is kept as written; a villager who is not a member has no
    member_id."""

    __tablename__ = "care_case"
    __table_args__ = (sa.UniqueConstraint("campaign", "member_id", name="uq_care_case_campaign_member"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organization.id", index=True)  # the branch
    member_id: int | None = Field(default=None, foreign_key="member.id", index=True)
    subject_name: str = Field(max_length=50)
    occasion: str = Field(max_length=20)
    source: str = Field(max_length=10)
    # A festival campaign's key, e.g. "春节:2027": one case per campaign and member.
    campaign: str | None = Field(default=None, max_length=30)
    # The member concerned asked that reporters are not shown the case.
    hidden_from_reporter: bool = False
    visitor_id: int | None = Field(default=None, foreign_key="member.id", index=True)
    deadline: datetime = Field(sa_column=utc_column(nullable=False))
    status: str = Field(default=CareStatus.OPEN.value, max_length=10, index=True)
    opened_by: int | None = Field(default=None, foreign_key="member.id")
    opened_at: datetime = Field(sa_column=utc_column(nullable=False, index=True))
    closed_at: datetime | None = Field(default=None, sa_column=utc_column())
    # Past its deadline, the visitor was reminded (once); a day later the township staff were told (once).
    reminded_at: datetime | None = Field(default=None, sa_column=utc_column())
    escalated_at: datetime | None = Field(default=None, sa_column=utc_column())


class CareReport(SQLModel, table=True):
    """What one member reported about a case, as written. A second report of the same occasion joins the
    open case as another report."""

    __tablename__ = "care_report"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="care_case.id", index=True)
    reporter_id: int = Field(foreign_key="member.id", index=True)
    details: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    reported_at: datetime = Field(sa_column=utc_column(nullable=False))


class CareVisit(SQLModel, table=True):
    """A visit made: when, who went, what was said and given. What people wrote is kept as written; the
    amount is also read into fen (分) so that totals can be summed."""

    __tablename__ = "care_visit"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="care_case.id", index=True)
    visited_at: datetime = Field(sa_column=utc_column(nullable=False, index=True))
    visitors: str = Field(max_length=200)
    notes: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    given: str = Field(default="", max_length=200)
    amount: str = Field(default="", max_length=50)  # as written, e.g. "500元"
    amount_fen: int | None = None
    fund: str = Field(default="", max_length=100)
    recorded_by: int = Field(foreign_key="member.id")
    recorded_at: datetime = Field(sa_column=utc_column(nullable=False))


class CareMedia(SQLModel, table=True):
    """A photo or voice message sent with a report or after a visit (WeChat media ids; the files stay with
    WeChat for three days, the picture address longer)."""

    __tablename__ = "care_media"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="care_case.id", index=True)
    report_id: int | None = Field(default=None, foreign_key="care_report.id")
    visit_id: int | None = Field(default=None, foreign_key="care_visit.id")
    kind: str = Field(max_length=10)  # "image" | "voice"
    media_id: str = Field(max_length=200)
    pic_url: str = Field(default="", max_length=500)
    added_by: int = Field(foreign_key="member.id")
    added_at: datetime = Field(sa_column=utc_column(nullable=False))


class CareProfile(SQLModel, table=True):
    """What the branch keeps about caring for one member: the 困难党员台账 entry of a member in hardship
    (Member.hardship is the flag: the roster's 困难党员 column or the register sets it), whether the member is
    an old cadre or on the branch's own festival-visit list, and who visits them first. The help given over
    time is the member's visits."""

    __tablename__ = "care_profile"
    member_id: int = Field(foreign_key="member.id", primary_key=True)
    hardship_level: str = Field(default="", max_length=20)
    hardship_reason: str = Field(default="", max_length=500)
    hardship_since: date | None = None
    old_cadre: bool = False  # 老干部: visited on 七一
    festival_visits: bool = False  # added by the secretary to every festival campaign
    # The member's designated contact, who is made visitor of their cases (else the branch secretary).
    contact_id: int | None = Field(default=None, foreign_key="member.id")
    updated_by: int | None = Field(default=None, foreign_key="member.id")
    updated_at: datetime = Field(sa_column=utc_column(nullable=False))


# ---------------------------------------------------------------- study (issue 16)


class StudyItem(SQLModel, table=True):
    """One study item a county, township or branch publishes for a period: a short text to read (or a link,
    or one of the curated documents), its estimated minutes and up to three check questions. Items from
    content/study files are kept in step with the files by `key` ("file:<file>:<id>")."""

    __tablename__ = "study_item"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=120, unique=True)
    # The publishing organization's path ("示范县委/城关镇党委"); "" is everyone. It reaches the branches under it.
    org_path: str = Field(default="", max_length=500)
    title: str = Field(max_length=100)
    summary: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    link: str = Field(default="", max_length=500)
    doc: str = Field(default="", max_length=60)  # a curated document's id (content/docs)
    minutes: int
    # JSON list of {"question", "options": [...], "answer": 1-based number}: answers are shown, never scored.
    questions: str = Field(default="[]", sa_column=sa.Column(sa.Text, nullable=False, server_default="[]"))
    source: str = Field(default="", max_length=200)
    starts_on: date = Field(index=True)
    ends_on: date
    created_at: datetime = Field(sa_column=utc_column(nullable=False))
    updated_at: datetime = Field(sa_column=utc_column(nullable=False))


class StudyDone(SQLModel, table=True):
    """A member marked an item studied (已学): once per item and member. No score is kept."""

    __tablename__ = "study_done"
    __table_args__ = (sa.UniqueConstraint("item_id", "member_id", name="uq_study_done"),)
    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="study_item.id", index=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    done_at: datetime = Field(sa_column=utc_column(nullable=False))


class StudyProfile(SQLModel, table=True):
    """A member's study settings: study reminders muted (关闭学习提醒), or 送学上门 (the branch brings study to an
    elderly, frail or ill member: no pushes, no chasers)."""

    __tablename__ = "study_profile"
    member_id: int = Field(foreign_key="member.id", primary_key=True)
    muted: bool = False
    at_home: bool = False
    updated_at: datetime = Field(sa_column=utc_column(nullable=False))
