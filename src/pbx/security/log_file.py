"""
The security log's file (``security.log``): failed logins and bans, one
line each (:mod:`pbx.security.log_lines`), for fail2ban or a SIEM.

Lines are written off the reactor thread: they wait in memory while one
batch at a time is appended in a worker thread, so a slow disk delays the
log, never the calls.  At most :data:`MAX_PENDING` lines wait; past that
they are counted and dropped, and a line in the log says how many.

Rotation needs no signal.  The file is opened for appending (``O_APPEND``),
and before each batch its path is looked at again: if the file there is not
the one open (logrotate's ``create``, or it was moved or deleted), the path
is opened anew.  With ``copytruncate`` the open file is emptied in place,
and appends go on at its new end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import IO, Any

from attrs import define, field

from zope.interface import implementer

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.security.connections import ThrottledLog
from pbx.security.defence import Ban
from pbx.security.interfaces import ISecurityLog
from pbx.security.log_lines import Remote, ban_line, failed_login_line

__all__ = ["MAX_PENDING", "AppendingFile", "NoSecurityLog", "SecurityLog"]

#: Most lines waiting to be written.
MAX_PENDING = 10_000

#: Runs a blocking call in a worker thread: ``run(function, *args)``.
ThreadRunner = Callable[..., "Deferred[Any]"]


@define(eq=False)
class AppendingFile:
    """
    A text file lines are appended to, opened again when rotated; see the
    module docstring.  Its methods block: call them from a worker thread
    (or at start-up).

    :ivar path: the file.
    """

    path: str
    _file: IO[str] | None = field(default=None, init=False)
    _identity: tuple[int, int] | None = field(default=None, init=False)

    def open(self) -> None:
        """
        Open (or create, mode 0640) the file for appending.

        :raises OSError: it cannot be opened.
        """
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        opened = os.fdopen(descriptor, "a", encoding="utf-8", newline="\n")
        status = os.fstat(descriptor)
        self.close()
        self._file, self._identity = opened, (status.st_dev, status.st_ino)

    def _rotated(self) -> bool:
        """Whether the path no longer leads to the open file."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (status.st_dev, status.st_ino) != self._identity

    def append(self, lines: Iterable[str]) -> None:
        """
        Write ``lines``, each ending in a newline, and flush them.

        :raises OSError: the file cannot be opened or written.
        """
        if self._file is None or self._rotated():
            self.open()
        assert self._file is not None
        self._file.write("".join(f"{line}\n" for line in lines))
        self._file.flush()

    def close(self) -> None:
        """Close the file; harmless twice."""
        opened, self._file = self._file, None
        if opened is not None:
            opened.close()


@implementer(ISecurityLog)
@define(eq=False)
class SecurityLog:
    """
    Writes failed logins and bans to an :class:`AppendingFile` in a worker
    thread, one batch at a time, in order.

    :ivar file: where the lines go.
    :ivar clock: the time of each line.
    :ivar run: runs a blocking call in a worker thread.
    :ivar pid: the process id the lines name.
    """

    file: AppendingFile
    clock: IReactorTime
    run: ThreadRunner
    pid: int = field(factory=os.getpid)
    _pending: list[str] = field(factory=list, init=False)
    _dropped: int = field(default=0, init=False)
    _writing: bool = field(default=False, init=False)
    _drained: list[Deferred[None]] = field(factory=list, init=False)
    _throttled: ThrottledLog = field(init=False)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self._throttled = ThrottledLog(self.clock, self.log)

    def open(self) -> None:
        """
        Open the file, at start-up (so a path that cannot be written stops the start).

        :raises OSError: it cannot be opened.
        """
        self.file.open()

    def failed_login(self, service: str, account: str, remote: Remote, known: bool, method: str = "") -> None:
        """See :meth:`ISecurityLog.failed_login`; ``method`` is the SIP request's."""
        self._write(failed_login_line(self.clock.seconds(), self.pid, service, account, remote, known, method))

    def banned(self, ban: Ban) -> None:
        """See :meth:`ISecurityLog.banned`."""
        self._write(ban_line(ban.since, self.pid, ban.host, ban.reason, ban.until - ban.since, ban.strikes))

    def _write(self, line: str) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._dropped += 1
            return
        self._pending.append(line)
        if not self._writing:
            self._flush()

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if self._dropped:
            batch.append(f"# pbx: {self._dropped} security log line(s) dropped: the file was not keeping up")
            self._dropped = 0
        self._writing = True
        self.run(self.file.append, batch).addBoth(self._flushed)

    def _flushed(self, result: object) -> None:
        self._writing = False
        if isinstance(result, Failure):
            self._throttled.event(
                "write", "security log {path}: {error}; {count} batch(es) of lines lost",
                path=self.file.path, error=result.getErrorMessage(),
            )
        if self._pending:
            self._flush()
            return
        drained, self._drained = self._drained, []
        for waiter in drained:
            waiter.callback(None)

    def drained(self) -> Deferred[None]:
        """Fires once every line handed in so far is written (or failed)."""
        if not self._writing:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._drained.append(waiter)
        return waiter

    async def close(self) -> None:
        """Write what waits, then close the file."""
        await self.drained()
        self.file.close()


@implementer(ISecurityLog)
class NoSecurityLog:
    """The security log when ``security.log`` is not set: nothing is written."""

    def failed_login(self, service: str, account: str, remote: Remote, known: bool, method: str = "") -> None:
        """Write nothing."""

    def banned(self, ban: Ban) -> None:
        """Write nothing."""

    def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""
