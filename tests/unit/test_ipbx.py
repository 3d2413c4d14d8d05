"""
Tests for the two implementations of :class:`pbx.interfaces.IPBX`: the
running :class:`pbx.service.PBXService` (before it starts) and the
:class:`pbx.testing.FakePBX` every feature's tests run on.
"""

from __future__ import annotations

from typing import Any

from zope.interface import Interface, implementer
from zope.interface.verify import verifyObject

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.api.app import PBXApi
from pbx.api.http import APIError
from pbx.config import parse_config
from pbx.interfaces import IPBX
from pbx.security.passwords import verify_password
from pbx.service import PBXService
from pbx.testing import FakePBX, FakeUDPReactor

CONFIG = """
sip: {domain: pbx.test}
security: {lockout_failures: 2, lockout_window: 60, lockout_delay: 10}
"""


class IThing(Interface):
    """Something one feature offers another."""


@implementer(IThing)
class Thing:
    """Provides IThing."""


class InlinePool:
    """A thread pool that runs each job at once."""

    def callInThreadWithCallback(self, on_result: Any, f: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N802
        """Run ``f`` and report as twisted's ThreadPool does."""
        try:
            result = f(*args, **kwargs)
        except Exception as e:
            from twisted.python.failure import Failure

            on_result(False, Failure(e))
        else:
            on_result(True, result)


class InlineReactor(FakeUDPReactor):
    """A memory reactor whose thread pool runs jobs at once."""

    def getThreadPool(self) -> InlinePool:  # noqa: N802 - twisted API
        """The inline pool."""
        return InlinePool()

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N802 - twisted API
        """Call ``f`` now: there is one thread."""
        f(*args, **kwargs)


class ProviderTestsMixin:
    """What both implementations do with :meth:`IPBX.provide` and :meth:`IPBX.lookup`."""

    def make(self) -> Any:
        """The IPBX under test."""
        raise NotImplementedError

    def test_provides_ipbx(self: Any) -> None:
        """The object provides every attribute and method of IPBX."""
        self.assertTrue(verifyObject(IPBX, self.make()))

    def test_lookup(self: Any) -> None:
        """What one feature provides, another looks up; an interface nobody provides gives None."""
        pbx, thing = self.make(), Thing()
        self.assertIsNone(pbx.lookup(IThing))
        pbx.provide(IThing, thing)
        self.assertIs(pbx.lookup(IThing), thing)

    def test_provide_twice(self: Any) -> None:
        """A second provider of one interface is refused, and the first kept."""
        pbx, thing = self.make(), Thing()
        pbx.provide(IThing, thing)
        self.assertRaises(ValueError, pbx.provide, IThing, Thing())
        self.assertIs(pbx.lookup(IThing), thing)

    def test_provide_wrong_object(self: Any) -> None:
        """An object that does not provide the interface is refused."""
        pbx = self.make()
        self.assertRaises(TypeError, pbx.provide, IThing, object())
        self.assertIsNone(pbx.lookup(IThing))

    def test_secrets(self: Any) -> None:
        """hash_secret makes a PBKDF2 encoding that verify_secret accepts for that secret only."""
        pbx = self.make()
        encoded = self.successResultOf(pbx.hash_secret("4829"))
        self.assertTrue(verify_password("4829", encoded))
        self.assertTrue(self.successResultOf(pbx.verify_secret("4829", encoded)))
        self.assertFalse(self.successResultOf(pbx.verify_secret("4830", encoded)))

    def test_run_in_thread(self: Any) -> None:
        """run_in_thread fires with what the function returned, or fails with what it raised."""
        pbx = self.make()
        self.assertEqual(self.successResultOf(pbx.run_in_thread(int, "ff", base=16)), 255)
        self.failureResultOf(pbx.run_in_thread(divmod, 1, 0), ZeroDivisionError)

    def test_lockout_from_config(self: Any) -> None:
        """The shared lockout follows the security section."""
        lockout = self.make().lockout
        self.assertEqual((lockout.max_failures, lockout.window, lockout.base_delay), (2, 60, 10))

    def test_api_shares_the_lockout(self: Any) -> None:
        """The API counts failed logins in the PBX's lockout, the one features use."""
        pbx = self.make()
        api = PBXApi(pbx, lambda secret, encoded: succeed(False), lambda secret: succeed(""))
        self.assertIs(api.lockout, pbx.lockout)


class PBXServiceTests(ProviderTestsMixin, SynchronousTestCase):
    """The running PBX, not started."""

    def make(self) -> PBXService:
        """A PBXService on a memory reactor whose threads run at once."""
        return PBXService(parse_config(CONFIG, "t.yml", {}), InlineReactor(), codecs={})

    def test_authenticate_before_the_api(self) -> None:
        """Authenticating before the API listens is a programming error, not a 401."""
        self.assertRaises(RuntimeError, self.make().authenticate, object())


class FakePBXTests(ProviderTestsMixin, SynchronousTestCase):
    """The fake PBX of pbx.testing."""

    def make(self) -> FakePBX:
        """A FakePBX with the test config."""
        return FakePBX(config=parse_config(CONFIG, "t.yml", {}))

    def test_startup_hooks(self) -> None:
        """before_ready work runs at once (a test's PBX is ready) and announced secrets are recorded."""
        pbx = self.make()

        async def work() -> str:
            pbx.announce_secret("voicemail PIN", "1001", "482913")
            return "done"

        pbx.before_ready(work)
        [done] = pbx.startup_work
        self.assertEqual(self.successResultOf(done), "done")
        self.assertEqual(pbx.secrets, [("voicemail PIN", "1001", "482913")])

    def test_authenticate_without_api(self) -> None:
        """Without an API under test, every request is refused with 401."""
        error = self.assertRaises(APIError, FakePBX().authenticate, object())
        self.assertEqual(error.status, 401)

    def test_dial_scripted(self) -> None:
        """dial records the number and answers the outcome scripted for it, else the default one."""
        pbx = FakePBX(outcome="no_answer", outcomes={"1002": "busy"})
        self.assertEqual(self.successResultOf(pbx.dial(object(), "1002")), "busy")
        self.assertEqual(self.successResultOf(pbx.dial(object(), "1003")), "no_answer")
        self.assertEqual(pbx.dialled, ["1002", "1003"])

    def test_dial_talks(self) -> None:
        """With ``talk``, the outcome comes that many seconds later on the clock."""
        clock = Clock()
        pbx = FakePBX(clock=clock, talk=30.0)
        d: Deferred[str] = pbx.dial(object(), "1002")
        clock.advance(29)
        self.assertNoResult(d)
        clock.advance(1)
        self.assertEqual(self.successResultOf(d), "answered")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_dialer(self) -> None:
        """With a dialer, dial goes to it with every argument."""
        calls: list[tuple[Any, ...]] = []

        def dialer(channel: Any, number: str, **kwargs: Any) -> Deferred[str]:
            calls.append((channel, number, kwargs))
            return succeed("diverted")

        channel = object()
        pbx = FakePBX(dialer=dialer)
        self.assertEqual(self.successResultOf(pbx.dial(channel, "1002", caller="1001")), "diverted")
        self.assertEqual(
            calls, [(channel, "1002", {"caller": "1001", "caller_name": None, "timeout": None})]
        )

    def test_registrations_recorded(self) -> None:
        """Applications, diverters, packages, notifications and mounts are recorded; a name taken twice is refused."""
        pbx = FakePBX()

        class App:
            name = "app"

        pbx.register_application(App())
        self.assertRaises(ValueError, pbx.register_application, App())
        pbx.add_diverter(len)
        pbx.register_event_package("package")
        pbx.notify("message-summary", "1001")
        pbx.mount_api("things", "resource", {"/api/v1/things/": {}})
        self.assertEqual(
            (sorted(pbx.applications), pbx.diverters, pbx.packages, pbx.notified, pbx.mounted),
            (["app"], [len], ["package"], [("message-summary", "1001")],
             {"things": ("resource", {"/api/v1/things/": {}})}),
        )


class CallContractTests(SynchronousTestCase):
    """The call primitives of IPBX on the FakePBX features are tested with."""

    def test_originate_scripted(self) -> None:
        """originate() answers with the scripted outcome and records the number rung."""
        pbx = FakePBX(outcomes={"1002": "busy"})
        results: list[Any] = []
        pbx.originate("1002", caller="1001").addCallback(results.append)
        self.assertEqual([r.outcome for r in results], ["busy"])
        self.assertEqual(pbx.originated, ["1002"])

    def test_originate_headers(self) -> None:
        """originate() records the extra INVITE headers, and refuses one pbx would not send."""
        pbx = FakePBX()
        pbx.originate("1002", caller="1001", headers=[("Call-Info", "<sip:pbx>;answer-after=0")])
        self.assertEqual(pbx.originate_headers["1002"], [("Call-Info", "<sip:pbx>;answer-after=0")])
        with self.assertRaises(ValueError):
            pbx.originate("1003", caller="1001", headers=[("Call-Info", "a\r\nVia: x")])

    def test_subscribe_calls(self) -> None:
        """A subscriber gets every published call event until it unsubscribes."""
        from pbx.calls.events import CallEvent

        pbx = FakePBX()
        seen: list[str] = []
        unsubscribe = pbx.subscribe_calls(lambda event: seen.append(event.kind))
        pbx.events.publish(CallEvent("created", "c1", "1001", "1002", 0.0))
        unsubscribe()
        pbx.events.publish(CallEvent("ended", "c1", "1001", "1002", 1.0))
        self.assertEqual(seen, ["created"])
