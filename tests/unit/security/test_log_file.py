"""Tests for :mod:`pbx.security.log_file`: the security log's file, its writer and rotation."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from zope.interface.verify import verifyObject

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pbx.security.defence import Ban
from pbx.security.interfaces import ISecurityLog
from pbx.security.log_file import MAX_PENDING, AppendingFile, NoSecurityLog, SecurityLog
from pbx.security.log_lines import Remote

PHONE = Remote("udp", "192.0.2.7", 5062)


def in_place(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """Run ``function`` at once, as a worker thread would, but on this one."""
    try:
        return succeed(function(*args))
    except Exception as e:
        return fail(e)


class HeldRunner:
    """Holds each call handed to the worker until the test lets it run."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

    def __call__(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Hold one call."""
        d: Deferred[Any] = Deferred()
        self.calls.append((function, args, d))
        return d

    def run_next(self) -> None:
        """Run the oldest held call and fire its Deferred."""
        function, args, d = self.calls.pop(0)
        d.callback(function(*args))


class AppendingFileTests(SynchronousTestCase):
    """AppendingFile appends lines and follows logrotate."""

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "security.log")
        self.file = AppendingFile(self.path)
        self.addCleanup(self.file.close)

    def read(self, path: str | None = None) -> str:
        """The file's text."""
        with open(path or self.path, encoding="utf-8") as f:
            return f.read()

    def test_creates_and_appends(self) -> None:
        """The file is created mode 0640 and lines are appended after what was there."""
        with open(self.path, "w", encoding="utf-8") as f:
            f.write("old\n")
        self.file.append(["one", "two"])
        self.file.append(["three"])
        self.assertEqual(self.read(), "old\none\ntwo\nthree\n")
        os.unlink(self.path)
        self.file.append(["new"])
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o640 & ~_umask())

    def test_rotated_by_create(self) -> None:
        """After the file is moved away (logrotate create), lines go to a new file at the path."""
        self.file.append(["before"])
        os.rename(self.path, self.path + ".1")
        self.file.append(["after"])
        self.assertEqual(self.read(self.path + ".1"), "before\n")
        self.assertEqual(self.read(), "after\n")

    def test_rotated_by_create_with_new_file(self) -> None:
        """A new empty file logrotate created at the path is the one written to."""
        self.file.append(["before"])
        os.rename(self.path, self.path + ".1")
        open(self.path, "w").close()
        self.file.append(["after"])
        self.assertEqual(self.read(), "after\n")

    def test_copytruncate(self) -> None:
        """After the file is emptied in place (logrotate copytruncate), lines start at its new end."""
        self.file.append(["before" * 10])
        os.truncate(self.path, 0)
        self.file.append(["after"])
        self.assertEqual(self.read(), "after\n")

    def test_open_error(self) -> None:
        """A path that cannot be opened raises OSError naming it."""
        broken = AppendingFile(os.path.join(self.directory, "missing", "security.log"))
        error = self.assertRaises(OSError, broken.open)
        self.assertIn("missing", error.filename)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class SecurityLogTests(SynchronousTestCase):
    """SecurityLog writes lines in a worker, one batch at a time, in order, bounded."""

    def setUp(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        self.path = os.path.join(directory, "security.log")
        self.clock = Clock()
        self.clock.advance(1_736_935_425)
        self.runner = HeldRunner()
        self.log = SecurityLog(AppendingFile(self.path), self.clock, self.runner, pid=7)
        self.log.open()
        self.addCleanup(self.log.file.close)

    def lines(self) -> list[str]:
        """The lines in the file."""
        with open(self.path, encoding="utf-8") as f:
            return f.read().splitlines()

    def test_interface(self) -> None:
        """SecurityLog and NoSecurityLog provide ISecurityLog."""
        self.assertTrue(verifyObject(ISecurityLog, self.log))
        self.assertTrue(verifyObject(ISecurityLog, NoSecurityLog()))

    def test_batches_in_order(self) -> None:
        """Lines handed in while a batch is written go out next, as one batch, in order."""
        self.log.failed_login("SIP", "1001", PHONE, True, "REGISTER")
        self.log.failed_login("SIP", "1002", PHONE, False, "INVITE")
        self.log.banned(Ban("192.0.2.7", self.clock.seconds(), self.clock.seconds() + 60, 1, "unknown user"))
        self.assertEqual(len(self.runner.calls), 1)
        self.assertEqual(self.lines(), [])
        self.runner.run_next()
        self.assertEqual(len(self.lines()), 1)
        self.assertEqual(len(self.runner.calls), 1)
        self.runner.run_next()
        self.assertEqual(self.runner.calls, [])
        [first, second, ban] = self.lines()
        self.assertIn('AccountID="1001"', first)
        self.assertIn('SecurityEvent="InvalidAccountID"', second)
        self.assertIn('SecurityEvent="FailedACL"', ban)
        self.assertIn('Duration="60"', ban)
        self.assertTrue(first.startswith("[") and "SECURITY[7] pbx: " in first)

    def test_bounded(self) -> None:
        """Past MAX_PENDING waiting lines the rest are dropped, and a line says how many."""
        for _ in range(MAX_PENDING + 5):
            self.log.failed_login("SIP", "1001", PHONE, True, "REGISTER")
        self.runner.run_next()
        self.runner.run_next()
        lines = self.lines()
        # The first line went out at once; MAX_PENDING waited behind it.
        self.assertEqual(len(lines), 1 + MAX_PENDING + 1)
        self.assertEqual(lines[-1], "# pbx: 4 security log line(s) dropped: the file was not keeping up")

    def test_write_error_logged(self) -> None:
        """A batch that cannot be written is logged as a warning; once the path works again, lines are written."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        directory = os.path.join(os.path.dirname(self.path), "gone")
        path = os.path.join(directory, "security.log")
        log = SecurityLog(AppendingFile(path), self.clock, in_place)
        self.addCleanup(log.file.close)
        log.failed_login("SIP", "1001", PHONE, True, "REGISTER")
        [warning] = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertIn("No such file or directory", formatEvent(warning))
        os.makedirs(directory)
        log.failed_login("SIP", "1002", PHONE, True, "REGISTER")
        with open(path, encoding="utf-8") as f:
            self.assertIn('AccountID="1002"', f.read())

    def test_close_waits_for_lines(self) -> None:
        """Closing writes what waits before the file closes."""
        self.log.failed_login("SIP", "1001", PHONE, True, "REGISTER")
        closed = Deferred.fromCoroutine(self.log.close())
        self.assertNoResult(closed)
        self.runner.run_next()
        self.successResultOf(closed)
        self.assertEqual(len(self.lines()), 1)

    def test_close_when_idle(self) -> None:
        """Closing with nothing waiting is immediate."""
        self.successResultOf(Deferred.fromCoroutine(self.log.close()))
        self.successResultOf(Deferred.fromCoroutine(NoSecurityLog().close()))
        self.assertEqual(self.lines(), [])
