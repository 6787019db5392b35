"""All tables, in one place. Dates are stored as naive UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

ROLES = ("operator", "developer", "unknown")


def utcnow() -> datetime:
    """Now, as the naive UTC the tables store."""
    return datetime.now(UTC).replace(tzinfo=None)


class MailingList(SQLModel, table=True):
    __tablename__ = "mailing_list"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True, index=True)
    # operator | developer | unknown: seeds the role of the people first seen here.
    role: str = Field(default="unknown", max_length=20)


class Person(SQLModel, table=True):
    __tablename__ = "person"
    id: int | None = Field(default=None, primary_key=True)
    email: str | None = Field(default=None, max_length=320, unique=True)
    name: str = Field(default="", max_length=300)
    name_key: str = Field(default="", max_length=300, index=True)
    role: str = Field(default="unknown", max_length=20)
    # "list" when seeded from the first list seen, "manual" once someone set it.
    role_source: str = Field(default="list", max_length=20)


class Thread(SQLModel, table=True):
    __tablename__ = "thread"
    __table_args__ = (Index("ix_thread_list_subject", "list_id", "subject_key"),
                      Index("ix_thread_last_date", "last_date"))
    id: int | None = Field(default=None, primary_key=True)
    list_id: int = Field(foreign_key="mailing_list.id", index=True)
    subject: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    subject_key: str = Field(default="", max_length=250)
    first_date: datetime | None = Field(default=None, sa_type=DateTime)
    last_date: datetime | None = Field(default=None, sa_type=DateTime)
    message_count: int = 0


class Message(SQLModel, table=True):
    __tablename__ = "message"
    __table_args__ = (Index("ix_message_thread_date", "thread_id", "date"),)
    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=998, unique=True)
    message_id_generated: bool = False
    # sha1 of author, UTC second and subject: finds one message arriving in two archive forms.
    fingerprint: str | None = Field(default=None, max_length=40, index=True)
    list_id: int = Field(foreign_key="mailing_list.id", index=True)
    thread_id: int = Field(foreign_key="thread.id", index=True)
    parent_id: int | None = Field(default=None, foreign_key="message.id")
    person_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    subject: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    date: datetime | None = Field(default=None, sa_type=DateTime)
    # Indexed: an import looks up the children stored earlier that wait for each new parent.
    in_reply_to: str | None = Field(default=None, max_length=998, index=True)
    new_text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    quoted_text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # zlib-compressed original bytes, kept so messages can be reprocessed when rules change.
    raw: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False, default=b""))
    source_format: str = Field(default="", max_length=40)
    source_file: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    recovered: bool = False
    imported_at: datetime = Field(default_factory=utcnow, sa_type=DateTime)
    # The taxonomy version this message was last judged under; another value means re-judge.
    ruleset_version: str = Field(default="", max_length=60, index=True)
    # Pain or talk under that ruleset: the score (pain signals less talk signals) and its reasons.
    pain_score: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    pain_reasons: str = Field(default="", sa_column=Column(Text, nullable=False, default="", server_default=""))


class MessageRef(SQLModel, table=True):
    """Each Message-ID a message names in In-Reply-To or References (JWZ's containers)."""

    __tablename__ = "message_ref"
    __table_args__ = (UniqueConstraint("message_pk", "ref"),)
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    ref: str = Field(max_length=998, index=True)


class ImportRun(SQLModel, table=True):
    __tablename__ = "import_run"
    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = Field(default_factory=utcnow, sa_type=DateTime)
    finished_at: datetime | None = Field(default=None, sa_type=DateTime)
    paths: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    format: str = Field(default="auto", max_length=20)
    list_name: str | None = Field(default=None, max_length=200)
    messages_new: int = 0
    duplicates: int = 0
    threads_touched: int = 0
    problem_count: int = 0
    status: str = Field(default="running", max_length=20)


class ImportProblemRow(SQLModel, table=True):
    __tablename__ = "import_problem"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="import_run.id", index=True)
    file: str = Field(sa_column=Column(Text, nullable=False))
    where: str = Field(max_length=200)
    reason: str = Field(sa_column=Column(Text, nullable=False))


class User(SQLModel, table=True):
    __tablename__ = "user_account"
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    name: str = Field(default="", max_length=300)
    role: str = Field(default="operator", max_length=20)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime)
    # Who the identity provider says this is: "oidc:<issuer>|<sub>" or "github:<id>". The
    # provider's subject, not the address, identifies a returning person.
    identity: str | None = Field(default=None, max_length=600, unique=True)
    last_signin_at: datetime | None = Field(default=None, sa_type=DateTime)
    disabled: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    # sha256 of the token; the token itself is shown once and never stored.
    token_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=12)
    scopes: str = Field(default="read,write", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime)


class TicketMention(SQLModel, table=True):
    """A ticket reference a message wrote in its own new text (never in quoted text)."""

    __tablename__ = "ticket_mention"
    __table_args__ = (UniqueConstraint("message_pk", "ref"),)
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    ref: str = Field(max_length=300, index=True)


class MessageComponent(SQLModel, table=True):
    """The classifier's judgment of one message under one ruleset version."""

    __tablename__ = "message_component"
    __table_args__ = (UniqueConstraint("message_pk", "component"),)
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    component: str = Field(max_length=120, index=True)
    confidence: float
    reasons: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    ruleset_version: str = Field(max_length=60)


class ThreadComponentOverride(SQLModel, table=True):
    """A developer's correction: confirmed or rejected. Re-classification never touches it."""

    __tablename__ = "thread_component_override"
    __table_args__ = (UniqueConstraint("thread_id", "component"),)
    id: int | None = Field(default=None, primary_key=True)
    thread_id: int = Field(foreign_key="thread.id", index=True)
    component: str = Field(max_length=120)
    state: str = Field(max_length=20)  # confirmed | rejected
    by: str = Field(default="", max_length=320)
    at: datetime = Field(default_factory=utcnow, sa_type=DateTime)


FIX_STATES = ("none", "in_review", "merged", "released")


class Ticket(SQLModel, table=True):
    """A developer ticket; fix and test state are derived from the tracker and the evidence."""

    __tablename__ = "ticket"
    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(max_length=300, unique=True)
    tracker: str = Field(max_length=20, index=True)
    external_id: str = Field(default="", max_length=100, index=True)
    url: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    title: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    status: str = Field(default="", max_length=100)
    assignee: str = Field(default="", max_length=300)
    tracker_fix_state: str = Field(default="none", max_length=20)
    fix_state: str = Field(default="none", max_length=20, index=True)
    test_state: str = Field(default="none", max_length=20, index=True)
    fixed_in: str = Field(default="", max_length=200)
    updated_at: datetime | None = Field(default=None, sa_type=DateTime)


class TicketEvidence(SQLModel, table=True):
    """A commit or review that fixes, advances or tests a ticket."""

    __tablename__ = "ticket_evidence"
    __table_args__ = (UniqueConstraint("ticket_id", "kind", "ident"),)
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    kind: str = Field(max_length=20)  # fix | progress | review | test
    ident: str = Field(max_length=300)
    url: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    summary: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    date: datetime | None = Field(default=None, sa_type=DateTime)
    touches_tests: bool = False
    merged: bool = True
    release: str = Field(default="", max_length=200)


class ThreadPainOverride(SQLModel, table=True):
    """A developer's word on whether a thread is production pain; re-judging never touches it."""

    __tablename__ = "thread_pain_override"
    id: int | None = Field(default=None, primary_key=True)
    thread_id: int = Field(foreign_key="thread.id", unique=True)
    is_pain: bool
    by: str = Field(default="", max_length=320)
    at: datetime = Field(default_factory=utcnow, sa_type=DateTime)


class Cycle(SQLModel, table=True):
    """A release cycle (OpenStack Juno: 2014-04-17 to 2014-10-16). Cycles also come from
    data/cycles.toml; a row here with the same name wins."""

    __tablename__ = "cycle"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    start: datetime = Field(sa_type=DateTime)
    end: datetime = Field(sa_type=DateTime)
    source: str = Field(default="cli", max_length=20)  # cli | git | admin


PAIN_STATUSES = ("untracked", "tracked", "fix_in_review", "fixed_untested", "fixed_tested", "regressed")


class PainPoint(SQLModel, table=True):
    """One production problem: the threads (and later field reports) about it. Status and impact
    are derived (portal/painpoints.py) and stored only so lists can sort and filter on them."""

    __tablename__ = "pain_point"
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime)
    first_reported: datetime | None = Field(default=None, sa_type=DateTime, index=True)
    last_reported: datetime | None = Field(default=None, sa_type=DateTime)
    status: str = Field(default="untracked", max_length=20, index=True)
    status_since: datetime | None = Field(default=None, sa_type=DateTime)
    impact: float = Field(default=0.0, index=True)
    operators: int = 0
    reports: int = 0
    # Its components, comma-separated, most common first ("" = unclassified): for sorting the triage queue.
    components: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # Set when merged into another pain point; its members moved there (undo moves them back).
    merged_into_id: int | None = Field(default=None, foreign_key="pain_point.id", index=True)


class PainPointMember(SQLModel, table=True):
    """A thread in a pain point: each thread belongs to one at most."""

    __tablename__ = "pain_point_member"
    id: int | None = Field(default=None, primary_key=True)
    pain_point_id: int = Field(foreign_key="pain_point.id", index=True)
    thread_id: int = Field(foreign_key="thread.id", unique=True)
    how: str = Field(default="new", max_length=20)  # new | ticket | similar | manual
    score: float = 0.0
    by: str = Field(default="", max_length=320)
    added_at: datetime = Field(default_factory=utcnow, sa_type=DateTime)


class PainPointTicket(SQLModel, table=True):
    """A developer's link (or unlink) between a pain point and a ticket reference, on top of the
    references its threads make."""

    __tablename__ = "pain_point_ticket"
    __table_args__ = (UniqueConstraint("pain_point_id", "ref"),)
    id: int | None = Field(default=None, primary_key=True)
    pain_point_id: int = Field(foreign_key="pain_point.id", index=True)
    ref: str = Field(max_length=300)
    state: str = Field(default="linked", max_length=20)  # linked | unlinked
    by: str = Field(default="", max_length=320)
    at: datetime = Field(default_factory=utcnow, sa_type=DateTime)


class PainPointComponent(SQLModel, table=True):
    """A developer's word on a pain point's component: confirmed or rejected."""

    __tablename__ = "pain_point_component"
    __table_args__ = (UniqueConstraint("pain_point_id", "component"),)
    id: int | None = Field(default=None, primary_key=True)
    pain_point_id: int = Field(foreign_key="pain_point.id", index=True)
    component: str = Field(max_length=120)
    state: str = Field(max_length=20)  # confirmed | rejected
    by: str = Field(default="", max_length=320)
    at: datetime = Field(default_factory=utcnow, sa_type=DateTime)


class PainPointTest(SQLModel, table=True):
    """"Covered by test": a link to the test that guards this pain point from coming back."""

    __tablename__ = "pain_point_test"
    id: int | None = Field(default=None, primary_key=True)
    pain_point_id: int = Field(foreign_key="pain_point.id", index=True)
    url: str = Field(sa_column=Column(Text, nullable=False))
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    by: str = Field(default="", max_length=320)
    at: datetime = Field(default_factory=utcnow, sa_type=DateTime)


class PainPointVote(SQLModel, table=True):
    """"Affects me too" from a signed-in user: one per user and pain point."""

    __tablename__ = "pain_point_vote"
    __table_args__ = (UniqueConstraint("pain_point_id", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    pain_point_id: int = Field(foreign_key="pain_point.id", index=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=DateTime)


class AuditEvent(SQLModel, table=True):
    """Who changed what: merges, splits, links, marks. `detail` is JSON with what undo needs."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_target", "target_kind", "target_id"),)
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=DateTime)
    by: str = Field(default="", max_length=320)
    action: str = Field(max_length=40)
    target_kind: str = Field(max_length=40)
    target_id: int
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    undone_at: datetime | None = Field(default=None, sa_type=DateTime)


class Subscription(SQLModel, table=True):
    """A developer's weekly digest: the components they follow ("*" for all)."""

    __tablename__ = "subscription"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", unique=True)
    components: str = Field(default="*", sa_column=Column(Text, nullable=False, default="*"))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime)
    active: bool = True
    unsubscribed_at: datetime | None = Field(default=None, sa_type=DateTime)


DIGEST_STATES = ("frozen", "sending", "sent", "failed")


class Digest(SQLModel, table=True):
    """One recipient's digest of one cycle week, frozen (its content stored) before it is sent.
    The unique key is what makes a second sender, or a restarted one, skip it."""

    __tablename__ = "digest"
    __table_args__ = (UniqueConstraint("user_id", "cycle", "week"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    cycle: str = Field(max_length=100)
    week: str = Field(max_length=10)  # ISO week, 2014-W23
    subject: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    content: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))  # JSON
    message_id: str = Field(default="", max_length=300)
    # frozen -> sending -> sent; failed (the server refused it) is retried; a sender that died while
    # sending leaves "sending", which is reported and never resent automatically (at most once).
    status: str = Field(default="frozen", max_length=20, index=True)
    attempts: int = 0
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    frozen_at: datetime = Field(default_factory=utcnow, sa_type=DateTime)
    claimed_at: datetime | None = Field(default=None, sa_type=DateTime)
    sent_at: datetime | None = Field(default=None, sa_type=DateTime)


SOURCE_KINDS = ("feed", "pipermail", "ponymail", "hyperkitty", "tracker")


class Source(SQLModel, table=True):
    """A list archive or feed Earshot follows by itself, polled on a schedule."""

    __tablename__ = "source"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=20)
    url: str = Field(sa_column=Column(Text, nullable=False))
    list_name: str = Field(default="", max_length=200)
    role: str = Field(default="unknown", max_length=20)  # the list's role: operator | developer | unknown
    every_minutes: int = 60
    # First month to read from month-by-month archives (Pony Mail, HyperKitty), YYYY-MM.
    since: str = Field(default="", max_length=7)
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime)
    last_run_at: datetime | None = Field(default=None, sa_type=DateTime)
    last_status: str = Field(default="", max_length=20)  # new | unchanged | problems | failed
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    last_run_id: int | None = Field(default=None)
    messages_total: int = 0


class SourceDocument(SQLModel, table=True):
    """What the last fetch of one URL of a source said, for conditional GET next time."""

    __tablename__ = "source_document"
    __table_args__ = (UniqueConstraint("source_id", "url"),)
    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="source.id", index=True)
    url: str = Field(max_length=2000)
    etag: str = Field(default="", max_length=500)
    last_modified: str = Field(default="", max_length=100)
    sha256: str = Field(default="", max_length=64)
    fetched_at: datetime | None = Field(default=None, sa_type=DateTime)


class SavedSearch(SQLModel, table=True):
    """A user's saved query, followed as an Atom feed. The feed's secret is stored hashed."""

    __tablename__ = "saved_search"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    name: str = Field(max_length=200)
    query: str = Field(sa_column=Column(Text, nullable=False))  # JSON: q and the filters
    feed_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime)


class FieldReport(SQLModel, table=True):
    """An operator's structured report. Its words also live as one message of the
    `field-reports` list (thread_id), so it is classified, linked, grouped and searched like
    any thread; this row keeps the structure and who may change it."""

    __tablename__ = "field_report"
    id: int | None = Field(default=None, primary_key=True)
    # Bulk imports name each report (file's own id or a content hash): importing twice adds nothing.
    key: str = Field(max_length=200, unique=True)
    author_id: int | None = Field(default=None, foreign_key="user_account.id", index=True)
    author_name: str = Field(default="", max_length=300)
    thread_id: int | None = Field(default=None, foreign_key="thread.id", index=True)
    message_id: str = Field(max_length=300)
    title: str = Field(max_length=300)
    component: str = Field(default="", max_length=100)
    severity: str = Field(default="", max_length=20)
    release: str = Field(default="", max_length=100)
    distro: str = Field(default="", max_length=100)
    nodes: int | None = None
    instances: int | None = None
    # The operator's words (Markdown) and the post-mortem sections, JSON {field: text}.
    body: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    refs: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    links: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    source: str = Field(default="portal", max_length=40)
    source_file: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime)
