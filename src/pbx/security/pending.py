"""
PINs hashed off the startup path.

A PIN's PBKDF2 hash (600,000 iterations, :mod:`pbx.security.passwords`)
costs a few tenths of a second of CPU: a thousand PINs hashed one after the
other before ``pbx ready`` kept a fresh PBX deaf for minutes.  Instead, the
store first gets a *placeholder* (``pending$<random>``) as the PIN's
encoding, which :meth:`PendingPINs.verify` checks against the PIN held in
memory (the configuration's own secret, or one just generated), while a few
hashes at a time run in the thread pool.  Each hash that lands replaces its
placeholder in the store (unless the PIN was changed meanwhile), and the PIN
is dropped from memory.  The hashes end up exactly as strong as if they had
been made before ``pbx ready``.

A placeholder that outlived its process (a crash before its hash landed)
matches nothing: :func:`pbx.security.passwords.verify_password` refuses an
encoding it cannot decode.  :func:`is_placeholder` lets the next start find
and redo it.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from attrs import define, evolve, field

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

if TYPE_CHECKING:
    from pbx.interfaces import IStore

__all__ = ["PLACEHOLDER_PREFIX", "PendingPINs", "is_placeholder"]

PLACEHOLDER_PREFIX = "pending$"


def is_placeholder(encoded: str) -> bool:
    """Whether a stored PIN encoding is a placeholder, not a hash."""
    return encoded.startswith(PLACEHOLDER_PREFIX)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


@define(eq=False)
class PendingPINs:
    """
    PINs waiting for their hash, and the work that makes them.

    :ivar store: where the extensions' records are.
    :ivar clock: for the log line that tells how long hashing took.
    :ivar hasher: PBKDF2-hashes a PIN off the reactor thread.
    :ivar on_landed: told the extension number when its hash is stored
        (to drop cached records).
    :ivar concurrency: hashes running at once; the thread pool keeps room
        for logins and other work.
    """

    store: IStore
    clock: IReactorTime
    hasher: Callable[[str], Deferred[str]]
    on_landed: Callable[[str], None] = lambda number: None
    concurrency: int = 2
    _pins: dict[str, str] = field(init=False, factory=dict)
    _semaphore: DeferredSemaphore = field(init=False)
    _stopped: bool = field(init=False, default=False)
    _landed: int = field(init=False, default=0)
    _started_at: float | None = field(init=False, default=None)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self._semaphore = DeferredSemaphore(self.concurrency)

    @property
    def pending(self) -> int:
        """How many PINs are held in memory, waiting for their hash."""
        return len(self._pins)

    def hold(self, pin: str) -> str:
        """
        Keep ``pin`` in memory until its hash lands.

        :returns: the placeholder to store as the PIN's encoding now.
        """
        placeholder = PLACEHOLDER_PREFIX + secrets.token_urlsafe(18)
        self._pins[placeholder] = pin
        return placeholder

    def hash_later(
        self,
        number: str,
        placeholder: str,
        then: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> Deferred[None]:
        """
        Hash the PIN held under ``placeholder`` (already stored for extension
        ``number``) and put the hash in its place.

        :param then: more store work once the hash is stored (e.g. marking a
            configuration entry as synced).
        :returns: fires when the hash is stored, or was not needed any more.
        """
        if self._started_at is None:
            self._started_at = self.clock.seconds()
        done = self._semaphore.run(lambda: Deferred.fromCoroutine(self._land(number, placeholder, then)))
        done.addErrback(lambda f: self.log.failure("hashing the PIN of {number} failed", f, number=number))
        return done

    def verify(self, secret: str, encoded: str) -> bool | None:
        """
        Check ``secret`` against a placeholder.

        :returns: whether it matches the PIN held for ``encoded``; False for
            a placeholder this process does not hold; None when ``encoded``
            is no placeholder (a hash: check it as usual).
        """
        if not is_placeholder(encoded):
            return None
        pin = self._pins.get(encoded)
        return pin is not None and isinstance(secret, str) and _same(secret, pin)

    def stop(self) -> None:
        """Store nothing more (the store is closing); PINs not yet hashed are redone at the next start."""
        self._stopped = True

    async def _land(
        self, number: str, placeholder: str, then: Callable[[], Coroutine[Any, Any, None]] | None
    ) -> None:
        try:
            pin = self._pins.get(placeholder)
            if pin is None or self._stopped:
                return
            encoded = await self.hasher(pin)
            if self._stopped:
                return
            current = await self.store.get_extension(number)
            if current is not None and current.pin_hash == placeholder:
                await self.store.put_extension(evolve(current, pin_hash=encoded))
                if then is not None:
                    await then()
                self.on_landed(number)
                self._landed += 1
        finally:
            if not self._stopped:
                self._pins.pop(placeholder, None)
                self._report()

    def _report(self) -> None:
        if self._pins or not self._landed or self._started_at is None:
            return
        self.log.info(
            "{count} held secret(s) hashed and stored in {seconds:.1f} s; none is held in memory any more",
            count=self._landed, seconds=self.clock.seconds() - self._started_at,
        )
        self._landed, self._started_at = 0, None
