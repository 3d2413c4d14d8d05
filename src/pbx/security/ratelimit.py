"""
Token buckets per kind of SIP message, and the cheap look at raw bytes that
picks a message's kind before it is parsed.

Pure code: no Twisted, time is passed in.  A flood of 70,000 datagrams a
second is only survivable if dropping one costs a few microseconds, so
nothing here parses a message: the kind comes from the first token of the
start line (RFC 3261 §7.1, §7.2), the transaction from the first
``branch=`` parameter (the top Via's, §8.1.1.7).
"""

from __future__ import annotations

import re
from collections import OrderedDict

from attrs import define, field, frozen

__all__ = [
    "DEFAULT_LIMITS",
    "KINDS",
    "Bucket",
    "Limit",
    "RetransmissionPasses",
    "branch_of",
    "kind_of",
]


@frozen
class Limit:
    """
    A token bucket's shape: ``rate`` new messages a second on average,
    ``burst`` at once after a quiet spell.
    """

    rate: float
    burst: int


#: The kinds a message is limited as: the methods that cost pbx work when
#: new, every other method, and responses (to pbx's own requests).
KINDS = ("REGISTER", "INVITE", "SUBSCRIBE", "OPTIONS", "other", "response")

#: Per source address.  Sized for a busy office of 200 phones behind one NAT
#: address: each re-registers (a challenge, then the real REGISTER), keeps
#: ~10 BLF subscriptions and pings with OPTIONS, and after a power cut all
#: do it at once.  200 phones x 2 REGISTERs is 400 at once, then 3-7 a
#: second; 2,000 subscriptions x 2 spread over a minute is ~70 a second.
DEFAULT_LIMITS: dict[str, Limit] = {
    "REGISTER": Limit(50, 500),
    "INVITE": Limit(20, 100),
    "SUBSCRIBE": Limit(100, 1000),
    "OPTIONS": Limit(50, 400),
    "other": Limit(100, 500),
    "response": Limit(500, 2000),
}

_KIND_OF_TOKEN = {k.encode(): k for k in ("REGISTER", "INVITE", "SUBSCRIBE", "OPTIONS")}
_BRANCH = re.compile(rb"branch=([^;,\s]+)", re.IGNORECASE)
_SCAN = 4096  # the top Via is within the first few lines


def kind_of(data: bytes) -> str:
    """
    The kind of message ``data`` starts as: a method of :data:`KINDS`,
    ``"other"`` or ``"response"``.  Leading CRLFs are skipped (§7.5).
    """
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    space = data.find(b" ", 0, 32)
    token = data[:space] if space > 0 else b""
    if token.startswith(b"SIP/"):
        return "response"
    return _KIND_OF_TOKEN.get(token, "other")


def branch_of(data: bytes) -> bytes | None:
    """The first Via branch in ``data``, or None."""
    match = _BRANCH.search(data, 0, _SCAN)
    return match.group(1) if match else None


@define(eq=False, slots=True)
class Bucket:
    """One token bucket; full when made."""

    tokens: float
    updated: float

    def take(self, limit: Limit, now: float) -> bool:
        """Refill for the time since the last call, then take one token if there is one."""
        tokens = min(float(limit.burst), self.tokens + (now - self.updated) * limit.rate)
        self.updated = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False

    def full(self, limit: Limit, now: float) -> bool:
        """Whether the bucket has refilled completely by ``now``."""
        return self.tokens + (now - self.updated) * limit.rate >= limit.burst


#: RFC 3261 §17.1.1.2 / §17.1.2.2: a UDP client sends a request at most
#: about 11 times (Timer A/E doubling from T1 up to Timer B/F, 64*T1).
RETRANSMISSIONS = 11


@define(eq=False)
class RetransmissionPasses:
    """
    Admitted requests by ``(source, branch)``, each with the free passes its
    retransmissions still have.

    A retransmission (or the ACK or CANCEL of an admitted INVITE, which
    share its branch, §17.1.1.3, §9.1) gets through when the source's bucket
    is empty, so a busy source's own transactions still complete; the
    passes are capped so a flood of one branch is still limited.  Bounded:
    the oldest entries go first.
    """

    size: int = 65536
    _passes: OrderedDict[tuple[str, bytes], int] = field(factory=OrderedDict)

    def admitted(self, host: str, branch: bytes) -> None:
        """A new request was let through."""
        key = (host, branch)
        if key in self._passes:
            return
        if len(self._passes) >= self.size:
            self._passes.popitem(last=False)
        self._passes[key] = RETRANSMISSIONS

    def use(self, host: str, branch: bytes) -> bool:
        """Spend one free pass of a known transaction; False if none is left."""
        key = (host, branch)
        left = self._passes.get(key, 0)
        if left <= 0:
            return False
        self._passes[key] = left - 1
        return True

    def __len__(self) -> int:
        return len(self._passes)
