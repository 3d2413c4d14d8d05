"""Plain values that cross the storage boundary.

Every backend of :class:`pbx.interfaces.IStore` takes and returns these; none
of them knows about SQL, Twisted or the wire.  Times are POSIX seconds
(``float``) taken from the injected clock, never from ``time.time()`` in a
backend.
"""

from __future__ import annotations

from attrs import Factory, field, frozen


@frozen
class ExtensionRecord:
    """
    One extension (a user's phone number inside the PBX).

    SIP secrets are kept only as digest ``HA1`` values for the configured realm
    (RFC 3261 §22.4, RFC 7616 §3.4.2), one per algorithm: a database dump does
    not reveal the password, and verifying a digest needs nothing else.  The
    PIN (``pin_hash``: typed on a phone for voicemail, or to log in to the
    API) is a PBKDF2 hash (see :mod:`pbx.security.passwords`); the config
    file and the API still call it ``voicemail_pin``.
    """

    number: str
    name: str = ""
    email: str = ""
    realm: str = ""
    ha1_md5: str = ""
    ha1_sha256: str = ""
    pin_hash: str = ""
    enabled: bool = True
    # Where this extension came from: "config" (synced from YAML) or "api".
    source: str = "api"
    #: Do not disturb: callers get busy.
    dnd: bool = False
    #: Numbers calls are forwarded to: always, when busy, when not answered
    #: (or not registered); "" for none.
    forward_always: str = ""
    forward_busy: str = ""
    forward_no_answer: str = ""
    #: Caller ID name presented to callees; "" uses the extension's name.
    caller_id: str = ""
    #: SRTP for this extension's phones: ``off``, ``offered`` or ``required``
    #: (:class:`pbx.media.sdes.SrtpPolicy`; keys travel only over TLS).
    srtp: str = "offered"


@frozen
class Binding:
    """
    One registered contact of an address of record (RFC 3261 §10.3).

    ``aor`` is the extension number; ``contact`` the Contact URI as the phone
    sent it; ``expires_at`` an absolute time on the injected clock.
    """

    aor: str
    contact: str
    expires_at: float
    transport: str = "udp"
    source: str = ""  # "host:port" the REGISTER came from (RFC 3581 received/rport)
    user_agent: str = ""
    call_id: str = ""
    cseq: int = 0
    q: float = 1.0
    registered_at: float = 0.0


#: What a call detail record says of how its call went.  ``VOICEMAIL``: the
#: voicemail application answered it (a call diverted to voicemail, or one
#: dialled straight to it).  ``INTERRUPTED``: the call was up when pbx
#: stopped without hanging it up (a crash, ``kill -9``, a power cut); its
#: record was made at the next start and ends at the last moment the call
#: was known to be up.
DISPOSITIONS = ("ANSWERED", "VOICEMAIL", "NO ANSWER", "BUSY", "FAILED", "CANCELLED", "INTERRUPTED")


@frozen
class CallRecord:
    """
    One call detail record (CDR): one row per call leg.

    ``application`` names the dialplan application that answered the call
    (``voicemail``, ``attendant``, ``echo`` ...), or, on the record of a
    call that rang and was then diverted, the application it went to; ""
    for a call between people.

    ``linked_id`` is shared by every record of one conversation (as
    Asterisk's *linkedid*): the key of the call it began as (its caller's
    Call-ID).  A transfer, a park and its retrieval or recall, a pickup
    keep it; an attended transfer that joins two calls gives both the
    older one's.  Each party's record covers the time it sat in the call:
    ``answer`` is when it was connected, ``end`` when it left.
    """

    call_id: str
    caller: str
    callee: str
    start: float
    end: float
    answer: float | None = None
    disposition: str = "ANSWERED"  # one of DISPOSITIONS
    hangup_side: str = ""
    hangup_cause: str = ""
    codecs: str = ""
    leg: str = "a"
    application: str = ""
    #: A call through a trunk: the trunk, the number dialled, the number
    #: sent to the trunk, and what it cost by the rate table.
    trunk: str = ""
    dialled: str = ""
    sent: str = ""
    cost: float = 0.0
    #: A call from a trunk: what STIR/SHAKEN verification said of the
    #: caller's number (``TN-Validation-Passed``, ``TN-Validation-Failed``,
    #: ``No-TN-Validation``); "" when pbx does not verify.
    verstat: str = ""
    #: The conversation this record belongs to (default: its own ``call_id``).
    linked_id: str = field(default=Factory(lambda self: self.call_id, takes_self=True))
    #: The SRTP suite this leg's media was encrypted with (the last one
    #: agreed), "" for plain RTP.
    srtp: str = ""
    id: int | None = field(default=None, eq=False)

    @property
    def duration(self) -> float:
        """Seconds from the first INVITE to the end of the call."""
        return max(0.0, self.end - self.start)

    @property
    def billable(self) -> float:
        """Seconds from answer to end; zero for an unanswered call."""
        if self.answer is None:
            return 0.0
        return max(0.0, self.end - self.answer)


@frozen
class LiveCallEntry:
    """
    One leg of a call that is up, in the journal of live calls.

    Written when the call is answered, its ``touched`` time moved forward
    while the call lasts, and removed in the transaction that stores the
    call's records.  An entry found at startup belongs to a call the last
    run never finished: it becomes an ``INTERRUPTED`` record (see
    :meth:`interrupted`).

    ``node`` names the pbx that carries the call (several may share a
    PostgreSQL database); ``call`` is the call's key (its caller's
    Call-ID), ``call_id`` the Call-ID of this leg.
    """

    node: str
    call: str
    leg: str
    call_id: str
    caller: str
    callee: str
    start: float
    answer: float
    codecs: str = ""
    application: str = ""
    #: The last time the call was known to be up.
    touched: float = 0.0
    #: The record's :attr:`CallRecord.linked_id` ("": the call's key).
    linked_id: str = ""

    @classmethod
    def of(cls, node: str, call: str, record: CallRecord, now: float) -> LiveCallEntry:
        """The entry of one of an answered call's records (answered ``now`` if it says no time), touched at the answer."""
        answer = record.answer if record.answer is not None else now
        return cls(node, call, record.leg, record.call_id, record.caller, record.callee,
                   record.start, answer, record.codecs, record.application, answer, record.linked_id)

    def interrupted(self) -> CallRecord:
        """The record of this leg, cut off at the last touch."""
        return CallRecord(
            call_id=self.call_id, caller=self.caller, callee=self.callee, start=self.start,
            end=max(self.touched, self.answer), answer=self.answer, disposition="INTERRUPTED",
            hangup_side="pbx", hangup_cause="interrupted", codecs=self.codecs, leg=self.leg,
            application=self.application, linked_id=self.linked_id or self.call,
        )


@frozen
class AuditEvent:
    """One security-relevant event: a login, a lockout, a change by an admin."""

    time: float
    kind: str  # e.g. "sip.auth.failure", "api.login", "api.lockout"
    subject: str = ""  # who or what it is about: a username, an extension
    source: str = ""  # where it came from: an IP address
    detail: str = ""
    id: int | None = field(default=None, eq=False)


@frozen
class AdminRecord:
    """One administrator of the REST API; ``password_hash`` is PBKDF2-SHA256."""

    username: str
    password_hash: str
