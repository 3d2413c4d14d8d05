"""Tests for :mod:`pbx.log_level`: ``log.level`` between a log publisher and its observers."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pbx.config import LOG_LEVELS
from pbx.log_level import filter_observers, level_named


class LevelNamedTests(SynchronousTestCase):
    """Config level names map to Twisted's levels."""

    def test_every_config_level(self) -> None:
        """Each value ``log.level`` accepts names a LogLevel of the same name."""
        self.assertEqual(
            [level_named(name) for name in LOG_LEVELS],
            [LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error],
        )


class FilterObserversTests(SynchronousTestCase):
    """Observers of a publisher see only events at or above the level, until unfiltered."""

    def setUp(self) -> None:
        self.publisher = LogPublisher()
        self.first: list[dict[str, Any]] = []
        self.second: list[dict[str, Any]] = []
        self.publisher.addObserver(self.first.append)
        self.publisher.addObserver(self.second.append)
        self.log = Logger(namespace="pbx.test", observer=self.publisher)

    def emit_all(self) -> None:
        """One event at each level, its format naming the level."""
        for level in (
            LogLevel.debug,
            LogLevel.info,
            LogLevel.warn,
            LogLevel.error,
            LogLevel.critical,
        ):
            self.log.emit(level, level.name)

    def test_warn(self) -> None:
        """At warn, every observer gets warn, error and critical only."""
        filter_observers(self.publisher, LogLevel.warn)
        self.emit_all()
        for seen in (self.first, self.second):
            self.assertEqual(
                [e["log_format"] for e in seen], ["warn", "error", "critical"]
            )

    def test_always_shown(self) -> None:
        """An event marked always_shown passes any level; the same event unmarked does not."""
        filter_observers(self.publisher, LogLevel.error)
        self.log.info("pbx ready", always_shown=True)
        self.log.info("quiet")
        self.assertEqual([e["log_format"] for e in self.first], ["pbx ready"])

    def test_debug_passes_everything(self) -> None:
        """At debug, nothing is dropped."""
        filter_observers(self.publisher, LogLevel.debug)
        self.emit_all()
        self.assertEqual(len(self.first), 5)

    def test_unfilter(self) -> None:
        """Unfiltering puts the observers back: every level reaches them again."""
        unfilter = filter_observers(self.publisher, LogLevel.error)
        self.log.info("hidden")
        unfilter()
        self.log.info("shown")
        self.assertEqual([e["log_format"] for e in self.first], ["shown"])
        unfilter()  # twice is harmless
        self.log.debug("again")
        self.assertEqual([e["log_format"] for e in self.second], ["shown", "again"])

    def test_later_observers_unfiltered(self) -> None:
        """An observer added after the filter sees every level."""
        filter_observers(self.publisher, LogLevel.error)
        later: list[dict[str, Any]] = []
        self.publisher.addObserver(later.append)
        self.log.info("info")
        self.assertEqual(([e["log_format"] for e in later], self.first), (["info"], []))


class QuietMediaPortsTests(SynchronousTestCase):
    """Twisted's lines for media sockets opened and closed are dropped above debug."""

    def setUp(self) -> None:
        self.publisher = LogPublisher()
        self.seen: list[dict[str, Any]] = []
        self.publisher.addObserver(self.seen.append)
        # The shape twisted.python.log.msg gives udp.Port's lines (seen on a real port).
        self.legacy = Logger(namespace="log_legacy", observer=self.publisher)

    def emit(self, *texts: str) -> list[str]:
        for text in texts:
            self.legacy.info("{log_text}", log_text=text)
        return [e["log_text"] for e in self.seen]

    def test_media_socket_lines_dropped(self) -> None:
        """Opening and closing lines of ports in the range go; SIP ports, other lines and other ranges stay."""
        filter_observers(self.publisher, LogLevel.info, (10000, 20000))
        shown = self.emit(
            "RelayEndpoint starting on 10000", "(UDP Port 10001 Closed)",
            "SIPDatagramProtocol starting on 5060", "(UDP Port 5060 Closed)",
            "(UDP Port 20001 Closed)", "RTP port 10002 cannot be bound",
        )
        self.assertEqual(shown, ["SIPDatagramProtocol starting on 5060", "(UDP Port 5060 Closed)",
                                 "(UDP Port 20001 Closed)", "RTP port 10002 cannot be bound"])

    def test_debug_keeps_them(self) -> None:
        """At debug every line is kept."""
        filter_observers(self.publisher, LogLevel.debug, (10000, 20000))
        self.assertEqual(self.emit("RelayEndpoint starting on 10000"), ["RelayEndpoint starting on 10000"])

    def test_other_namespaces_untouched(self) -> None:
        """The same text from pbx's own logger is not Twisted's socket line and passes."""
        filter_observers(self.publisher, LogLevel.info, (10000, 20000))
        Logger(namespace="pbx.media", observer=self.publisher).info("{log_text}", log_text="(UDP Port 10001 Closed)")
        self.assertEqual(len(self.seen), 1)
