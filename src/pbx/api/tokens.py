"""Bearer tokens for the REST API: random, expiring, kept in memory only."""

from __future__ import annotations

import hashlib
import secrets

from attrs import define, field, frozen

from twisted.internet.interfaces import IReactorTime


@frozen
class Session:
    """Who a token belongs to and when it stops working."""

    username: str
    expires_at: float
    #: "admin" (everything) or "user" (an extension's own resources).
    role: str = "admin"
    #: The extension a user session belongs to ("" for admins).
    extension: str = ""
    #: The password has expired: the session may only change it or log out.
    must_change_password: bool = False


@define(eq=False)
class TokenStore:
    """
    Issues and checks bearer tokens.

    Only a SHA-256 digest of each token is held, so a memory dump of the
    process does not hand out live tokens.  Expired tokens are dropped when
    met and in a sweep at every issue, so the table stays bounded.
    """

    clock: IReactorTime
    lifetime: float = 3600.0
    max_sessions: int = 10_000
    _sessions: dict[str, Session] = field(factory=dict)

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()

    def issue(
        self, username: str, role: str = "admin", extension: str = "", must_change_password: bool = False
    ) -> tuple[str, Session]:
        """Make a new token for ``username``."""
        self._sweep()
        if len(self._sessions) >= self.max_sessions:
            oldest = min(self._sessions, key=lambda k: self._sessions[k].expires_at)
            del self._sessions[oldest]
        token = secrets.token_urlsafe(32)
        session = Session(username, self.clock.seconds() + self.lifetime, role, extension, must_change_password)
        self._sessions[self._key(token)] = session
        return token, session

    def check(self, token: str) -> Session | None:
        """Return the live session for ``token``, or None."""
        key = self._key(token)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires_at <= self.clock.seconds():
            del self._sessions[key]
            return None
        return session

    def revoke(self, token: str) -> bool:
        """End one session; True if it existed."""
        return self._sessions.pop(self._key(token), None) is not None

    def revoke_user(self, username: str) -> int:
        """End every session of one user (after a password change)."""
        keys = [k for k, s in self._sessions.items() if s.username == username]
        for k in keys:
            del self._sessions[k]
        return len(keys)

    def _sweep(self) -> None:
        now = self.clock.seconds()
        for k in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[k]

    def __len__(self) -> int:
        return len(self._sessions)
