"""
Tests for :mod:`pbx.startup_report`: how a start's outcome reaches twistd's
waiting parent, the operator's stderr, the pid file and the exit status.
"""

from __future__ import annotations

import os
from typing import Any

from zope.interface.verify import verifyObject

from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from pbx.interfaces import IStartupReport
from pbx.startup_report import TwistdStartupReport, remove_pid_file


class TwistdStartupReportTests(SynchronousTestCase):
    """The status pipe carries the real outcome; a failure ends the process with status 1."""

    def setUp(self) -> None:
        self.read_status, status = os.pipe()
        self.read_err, stderr = os.pipe()
        self.addCleanup(os.close, self.read_status)
        self.addCleanup(os.close, self.read_err)
        self.pidfile = os.path.abspath(self.mktemp())
        with open(self.pidfile, "w") as f:
            f.write(str(os.getpid()))
        # twistd's options once it has forked.
        self.options: dict[str, Any] = {"nodaemon": False, "pidfile": self.pidfile, "statusPipe": status}
        self.reactor = MemoryReactor()
        self.exits: list[int] = []
        self.report = TwistdStartupReport(self.options, self.reactor, stderr, self.exits.append)

    def read(self, fd: int) -> bytes:
        """All that was written to a pipe whose write end is closed."""
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
        return b"".join(chunks)

    def test_provides(self) -> None:
        """It is an IStartupReport."""
        verifyObject(IStartupReport, self.report)

    def test_starting_takes_the_pipe(self) -> None:
        """Starting removes the pipe from twistd's options, so twistd does not report success early."""
        self.report.starting()
        self.assertIsNone(self.options["statusPipe"])
        self.report.started()
        self.assertEqual(self.read(self.read_status), b"0")
        self.assertEqual(self.read(self.read_err), b"")
        self.assertEqual((self.exits, self.reactor.hasStopped), ([], False))

    def test_failure(self) -> None:
        """A failure prints the reason on stderr, tells the parent, stops, removes the pid file and exits 1."""
        self.reactor.running = True
        self.report.starting()
        self.report.failed("api.listen tcp:8080: Address already in use")
        self.assertEqual(self.read(self.read_err), b"pbx: startup failed: api.listen tcp:8080: Address already in use\n")
        self.assertEqual(self.read(self.read_status), b"1 pbx: startup failed (the reason is above)")
        self.assertFalse(os.path.exists(self.pidfile))
        self.assertTrue(self.reactor.hasStopped)
        [(trigger, args, _)] = self.reactor.triggers["after"]["shutdown"]
        trigger(*args)
        self.assertEqual(self.exits, [1])

    def test_failure_before_the_reactor_runs(self) -> None:
        """A failure before the reactor runs stops it as soon as it runs, rather than running forever."""
        self.report.failed("state_dir /x: Permission denied")
        self.assertEqual(self.reactor.whenRunningHooks, [(self.reactor.stop, (), {})])

    def test_foreground(self) -> None:
        """Under twistd -n there is no pipe and no stderr copy; a failure still exits 1."""
        report = TwistdStartupReport.before_forking({"nodaemon": True, "pidfile": ""}, self.reactor)
        report.starting()
        report.started()
        report.failed("boom")
        [(_, args, _)] = self.reactor.triggers["after"]["shutdown"]
        self.assertEqual(args, (1,))


class RemovePidFileTests(SynchronousTestCase):
    """Only this process's pid file is removed."""

    def test_other_process(self) -> None:
        """A pid file naming another process stays."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(str(os.getpid() + 1))
        remove_pid_file(path)
        self.assertTrue(os.path.exists(path))

    def test_missing(self) -> None:
        """A missing pid file, or none configured, is not an error and logs nothing."""
        events: list[dict[str, Any]] = []
        self.patch(TwistdStartupReport, "log", Logger(observer=events.append))
        remove_pid_file(self.mktemp())
        remove_pid_file("")
        remove_pid_file(None)
        self.assertEqual(events, [])

    def test_unreadable(self) -> None:
        """A pid file that holds no number stays, with one warning."""
        events: list[dict[str, Any]] = []
        self.patch(TwistdStartupReport, "log", Logger(observer=events.append))
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("garbage")
        remove_pid_file(path)
        self.assertTrue(os.path.exists(path))
        self.assertEqual([e["path"] for e in events], [path])
