"""
Telling whoever waits how a start of the PBX ended.

``twistd pbx`` without ``-n`` forks; the process the operator started waits
on a status pipe (``statusPipe`` in twistd's options) and exits 0 when it
reads ``0``, or prints what it reads and exits 1.  twistd writes ``0`` as
soon as ``startService`` returns, but the PBX starts asynchronously (the
store opens, then the listeners bind).  So :meth:`TwistdStartupReport.starting`
takes the pipe out of twistd's options, and the real outcome is written to
it later: ``0`` at ``pbx ready``, ``1 ...`` when startup fails.  The reason
goes, whole and on one line, to the stderr the operator started twistd with
(a copy kept from before the fork); twistd's parent then adds its own two
lines and exits 1.

A failed start stops the reactor, removes the pid file (twistd removes it
only after a normal stop) and ends the process with status 1, daemon or not.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from typing import Any

from attrs import define

from zope.interface import implementer

from twisted.logger import Logger

from pbx.interfaces import IStartupReport

__all__ = ["TwistdStartupReport"]

#: twistd's parent reads at most 100 bytes from the status pipe.
_PIPE_MESSAGE = 100


@implementer(IStartupReport)
@define(eq=False)
class TwistdStartupReport:
    """
    The outcome of a start under ``twistd``.

    :param server_options: twistd's own options (``ServerOptions``, the
        ``parent`` of ours): ``nodaemon``, ``pidfile`` and, once twistd has
        forked, ``statusPipe``.
    :param reactor: the reactor to stop when startup fails.
    :param stderr: a copy of the operator's stderr made before twistd
        forked, or None when twistd does not fork.
    :param exit: ends the process with a status (``os._exit`` by default:
        twistd would otherwise exit 0 once the reactor stops).
    """

    _server_options: MutableMapping[str, Any]
    _reactor: Any
    _stderr: int | None = None
    _exit: Callable[[int], object] = os._exit
    _pipe: int | None = None
    log = Logger()

    @classmethod
    def before_forking(cls, server_options: MutableMapping[str, Any], reactor: Any) -> TwistdStartupReport:
        """
        The report for a twistd about to start us (call it in ``makeService``,
        which runs before twistd forks): keeps a copy of stderr if it will
        fork.
        """
        stderr = None if server_options.get("nodaemon", True) else os.dup(2)
        return cls(server_options, reactor, stderr)

    def starting(self) -> None:
        """Take twistd's status pipe, so that it is written when the start has really ended."""
        # twistd's postApplication writes "0" to config["statusPipe"] once
        # startService returns, unless it is gone.
        self._pipe = self._server_options.get("statusPipe")
        if self._pipe is not None:
            self._server_options["statusPipe"] = None

    def started(self) -> None:
        """Tell the waiting parent the daemon is up: it exits 0."""
        self._tell(b"0")
        self._close_stderr()

    def failed(self, problem: str) -> None:
        """Show ``problem`` on the operator's stderr, tell the parent, and stop with status 1."""
        line = f"pbx: startup failed: {problem}"
        summary = problem
        if self._stderr is not None:
            try:
                _write_all(self._stderr, f"{line}\n".encode("utf-8", "backslashreplace"))
                summary = "pbx: startup failed (the reason is above)"
            except OSError:
                pass  # nobody reads it any more; the log has the line
            self._close_stderr()
        # Gone before the parent returns, so nothing that follows it sees a stale one.
        remove_pid_file(self._server_options.get("pidfile"))
        # The parent prints repr(message[2:]) and exits 1.
        self._tell(b"1 " + summary.encode("ascii", "backslashreplace")[: _PIPE_MESSAGE - 2])
        self._reactor.addSystemEventTrigger("after", "shutdown", self._end, 1)
        if self._reactor.running:
            self._reactor.stop()
        else:
            self._reactor.callWhenRunning(self._reactor.stop)

    def _end(self, status: int) -> None:
        self._exit(status)

    def _tell(self, message: bytes) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            try:
                _write_all(pipe, message)
            finally:
                os.close(pipe)

    def _close_stderr(self) -> None:
        stderr, self._stderr = self._stderr, None
        if stderr is not None:
            os.close(stderr)


def remove_pid_file(path: str | None) -> None:
    """Remove twistd's pid file if it names this process (nothing else's)."""
    if not path:
        return
    try:
        with open(path, "rb") as f:
            pid = int(f.read().strip() or b"0")
        if pid == os.getpid():
            os.unlink(path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        TwistdStartupReport.log.warn("pid file {path} not removed: {error}", path=path, error=e)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
