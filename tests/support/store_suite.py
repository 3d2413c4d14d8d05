"""
The tests every :class:`pbx.interfaces.IStore` backend must pass.

A backend's test module mixes :class:`StoreSuiteMixin` into a
``twisted.trial.unittest.TestCase`` and implements
:meth:`StoreSuiteMixin.make_store`.  The store is real I/O (a database file, a
PostgreSQL server), so these tests return Deferreds and trial runs the reactor
until they fire.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from zope.interface.verify import verifyObject

from twisted.internet.defer import Deferred, gatherResults

from pbx.interfaces import IStore
from pbx.records import (
    AdminRecord,
    AuditEvent,
    Binding,
    CallRecord,
    ExtensionRecord,
    LiveCallEntry,
)
from pbx.store import schema
from pbx.store.schema import LATEST_VERSION
from pbx.store.sql import SQLStore

T = TypeVar("T")

if TYPE_CHECKING:
    # The mixin is only ever used with trial's TestCase; let mypy know.
    from twisted.trial.unittest import TestCase as _TestCase
else:
    _TestCase = object

#: Quotes, backslashes, SQL, a psycopg2 placeholder, our own query marker and
#: text outside the BMP: none of it may reach the SQL text.
AWKWARD = 'O\'Brien "Bob" \\ %s {p} ; DROP TABLE settings; -- Zoë 名前 🎉'


def deferred_test(
    test: Callable[[T], Coroutine[Any, Any, None]],
) -> Callable[[T], Deferred[None]]:
    """
    Turn an ``async def`` test method into one that returns a Deferred.

    :param test: the coroutine function.
    :returns: a test method trial waits on.
    """

    @functools.wraps(test)
    def run(self: T) -> Deferred[None]:
        return Deferred.fromCoroutine(test(self))

    return run


def extension(number: str, **kwargs: Any) -> ExtensionRecord:
    """An extension with every field set, overridable by keyword."""
    fields: dict[str, Any] = {
        "name": f"User {number}",
        "email": f"{number}@example.com",
        "realm": "pbx.example.com",
        "ha1_md5": "0" * 32,
        "ha1_sha256": "1" * 64,
        "pin_hash": "pbkdf2_sha256$1$salt$hash",
        "enabled": True,
        "source": "config",
        "dnd": True,
        "forward_always": "",
        "forward_busy": "1002",
        "forward_no_answer": "*97",
        "caller_id": "Front Desk",
    }
    fields.update(kwargs)
    return ExtensionRecord(number=number, **fields)


def binding(
    aor: str, contact: str, expires_at: float = 3600.0, **kwargs: Any
) -> Binding:
    """A binding with every field set, overridable by keyword."""
    fields: dict[str, Any] = {
        "transport": "udp",
        "source": "192.0.2.10:5060",
        "user_agent": "Phone/1.0",
        "call_id": f"reg-{aor}",
        "cseq": 7,
        "q": 0.5,
        "registered_at": 100.25,
    }
    fields.update(kwargs)
    return Binding(aor=aor, contact=contact, expires_at=expires_at, **fields)


def call(
    start: float, caller: str = "100", callee: str = "200", **kwargs: Any
) -> CallRecord:
    """A call record starting at ``start``, overridable by keyword."""
    fields: dict[str, Any] = {
        "call_id": f"call-{start}",
        "end": start + 60.5,
        "answer": start + 5.25,
        "codecs": "PCMU",
    }
    fields.update(kwargs)
    return CallRecord(caller=caller, callee=callee, start=start, **fields)


class StoreSuiteMixin(_TestCase):
    """
    The shared store tests; mix into a trial ``TestCase``.

    ``setUp`` makes a store with :meth:`make_store`, migrates it and arranges
    for it to be closed; each test finds it as ``self.store``.
    """

    store: IStore

    async def make_store(self) -> IStore:
        """
        Make a new, empty, not yet migrated store; the backend's tests say how.

        :returns: the store under test.
        """
        raise NotImplementedError

    def setUp(self) -> Any:  # unittest types setUp as -> None; trial waits on this
        """Make, migrate and register the closing of ``self.store``."""
        return Deferred.fromCoroutine(self._set_up())

    async def _set_up(self) -> None:
        self.store = await self.make_store()
        self.addCleanup(self.store.close)
        await self.store.migrate()

    # Schema

    def test_provides_interface(self) -> None:
        """The store provides every method of IStore."""
        self.assertTrue(verifyObject(IStore, self.store))

    @deferred_test
    async def test_migrate_returns_newest_version(self) -> None:
        """Migrating returns the newest schema version."""
        self.assertEqual(await self.store.migrate(), LATEST_VERSION)

    @deferred_test
    async def test_migrate_is_idempotent(self) -> None:
        """Migrating an up-to-date database again changes nothing and keeps the data."""
        await self.store.put_setting("marker", "kept")
        self.assertEqual(await self.store.migrate(), LATEST_VERSION)
        self.assertEqual(await self.store.migrate(), LATEST_VERSION)
        self.assertEqual(await self.store.get_setting("marker"), "kept")

    # Extensions

    @deferred_test
    async def test_get_missing_extension(self) -> None:
        """Getting an unknown extension gives None."""
        self.assertIsNone(await self.store.get_extension("999"))

    @deferred_test
    async def test_put_get_extension(self) -> None:
        """Every field of an extension, a false ``enabled`` included, comes back."""
        record = extension("100", enabled=False)
        await self.store.put_extension(record)
        got = await self.store.get_extension("100")
        self.assertEqual(got, record)
        self.assertIs(got.enabled, False)

    @deferred_test
    async def test_list_extensions_ordered(self) -> None:
        """Extensions are listed ordered by number, compared as text."""
        for number in ("200", "1000", "20", "100"):
            await self.store.put_extension(extension(number))
        listed = await self.store.list_extensions()
        self.assertEqual([r.number for r in listed], ["100", "1000", "20", "200"])
        self.assertEqual(listed[0], extension("100"))

    @deferred_test
    async def test_put_extension_replaces(self) -> None:
        """Putting an extension with a known number replaces it."""
        await self.store.put_extension(extension("100"))
        await self.store.put_extension(extension("100", name="New", source="api"))
        self.assertEqual(
            await self.store.list_extensions(),
            [extension("100", name="New", source="api")],
        )

    @deferred_test
    async def test_delete_extension(self) -> None:
        """Deleting an extension removes it and its bindings, and no one else's."""
        await self.store.put_extension(extension("100"))
        await self.store.put_extension(extension("200"))
        await self.store.put_binding(binding("100", "sip:100@192.0.2.1"))
        await self.store.put_binding(binding("200", "sip:200@192.0.2.2"))
        self.assertIs(await self.store.delete_extension("100"), True)
        self.assertIsNone(await self.store.get_extension("100"))
        self.assertEqual(
            [r.number for r in await self.store.list_extensions()], ["200"]
        )
        self.assertEqual(
            await self.store.list_bindings(), [binding("200", "sip:200@192.0.2.2")]
        )

    @deferred_test
    async def test_delete_missing_extension(self) -> None:
        """Deleting an unknown extension reports False."""
        self.assertIs(await self.store.delete_extension("999"), False)

    # Bindings

    @deferred_test
    async def test_put_binding_round_trip(self) -> None:
        """Every field of a binding comes back with its type."""
        record = binding(
            "100",
            "sip:100@192.0.2.1:5062;transport=tcp",
            1234.5,
            cseq=42,
            transport="tcp",
        )
        await self.store.put_binding(record)
        (got,) = await self.store.list_bindings("100")
        self.assertEqual(got, record)
        self.assertEqual(
            (type(got.cseq), type(got.q), type(got.expires_at)), (int, float, float)
        )

    @deferred_test
    async def test_put_binding_replaces(self) -> None:
        """Putting a binding for a known aor and contact replaces it."""
        await self.store.put_binding(binding("100", "sip:100@a", 10.0, cseq=1))
        await self.store.put_binding(binding("100", "sip:100@a", 20.0, cseq=2))
        self.assertEqual(
            await self.store.list_bindings(),
            [binding("100", "sip:100@a", 20.0, cseq=2)],
        )

    @deferred_test
    async def test_list_bindings(self) -> None:
        """Bindings are listed ordered by aor then contact, all or of one aor."""
        for aor, contact in [
            ("200", "sip:b"),
            ("100", "sip:b"),
            ("200", "sip:a"),
            ("100", "sip:a"),
        ]:
            await self.store.put_binding(binding(aor, contact))
        everything = [(b.aor, b.contact) for b in await self.store.list_bindings()]
        self.assertEqual(
            everything,
            [("100", "sip:a"), ("100", "sip:b"), ("200", "sip:a"), ("200", "sip:b")],
        )
        of_200 = [(b.aor, b.contact) for b in await self.store.list_bindings("200")]
        self.assertEqual(of_200, [("200", "sip:a"), ("200", "sip:b")])
        self.assertEqual(await self.store.list_bindings("300"), [])

    @deferred_test
    async def test_delete_binding(self) -> None:
        """Deleting one binding leaves the aor's others and reports whether it existed."""
        await self.store.put_binding(binding("100", "sip:a"))
        await self.store.put_binding(binding("100", "sip:b"))
        self.assertIs(await self.store.delete_binding("100", "sip:a"), True)
        self.assertIs(await self.store.delete_binding("100", "sip:a"), False)
        self.assertEqual(await self.store.list_bindings(), [binding("100", "sip:b")])

    @deferred_test
    async def test_delete_bindings(self) -> None:
        """Deleting an aor's bindings removes all of them and counts them."""
        for contact in ("sip:a", "sip:b", "sip:c"):
            await self.store.put_binding(binding("100", contact))
        await self.store.put_binding(binding("200", "sip:a"))
        self.assertEqual(await self.store.delete_bindings("100"), 3)
        self.assertEqual(await self.store.delete_bindings("100"), 0)
        self.assertEqual(await self.store.list_bindings(), [binding("200", "sip:a")])

    @deferred_test
    async def test_write_many_bindings(self) -> None:
        """A batch larger than one statement carries replaces, inserts and deletes every binding it names."""
        await self.store.write_bindings([binding(str(1000 + i), "sip:a", 10.0) for i in range(1200)], [])
        await self.store.write_bindings(
            [binding(str(1000 + i), "sip:a", 20.0, cseq=2) for i in range(600, 1300)],
            [(str(1000 + i), "sip:a") for i in range(0, 550)],
        )
        stored = await self.store.list_bindings()
        self.assertEqual([b.aor for b in stored], [str(1000 + i) for i in range(550, 1300)])
        self.assertEqual({b.expires_at for b in stored[:50]}, {10.0})
        self.assertEqual({(b.expires_at, b.cseq) for b in stored[50:]}, {(20.0, 2)})

    @deferred_test
    async def test_write_bindings(self) -> None:
        """A batch deletes then inserts or replaces, all in one call."""
        await self.store.put_binding(binding("100", "sip:a", 10.0))
        await self.store.put_binding(binding("100", "sip:b", 10.0))
        await self.store.write_bindings(
            [binding("100", "sip:a", 30.0, cseq=3), binding("200", "sip:c", 40.0)],
            [("100", "sip:b"), ("100", "sip:gone")],
        )
        self.assertEqual(
            await self.store.list_bindings(),
            [binding("100", "sip:a", 30.0, cseq=3), binding("200", "sip:c", 40.0)],
        )
        await self.store.write_bindings([], [])
        self.assertEqual(len(await self.store.list_bindings()), 2)

    @deferred_test
    async def test_expire_bindings(self) -> None:
        """Expiring removes bindings that expire at or before the time, and counts them."""
        for contact, expires_at in [
            ("sip:a", 99.5),
            ("sip:b", 100.0),
            ("sip:c", 100.5),
        ]:
            await self.store.put_binding(binding("100", contact, expires_at))
        self.assertEqual(await self.store.expire_bindings(100.0), 2)
        self.assertEqual(
            [b.contact for b in await self.store.list_bindings()], ["sip:c"]
        )

    # Call detail records

    @deferred_test
    async def test_add_call_record(self) -> None:
        """Adding call records gives each a new id and keeps every field, a missing answer too."""
        answered = call(10.0)
        missed = call(
            20.0, answer=None, disposition="NO ANSWER", hangup_side="caller", leg="b"
        )
        first = await self.store.add_call_record(answered)
        second = await self.store.add_call_record(missed)
        self.assertTrue(isinstance(first, int) and second > first)
        total, records = await self.store.list_call_records()
        self.assertEqual((total, records), (2, [missed, answered]))
        self.assertEqual([r.id for r in records], [second, first])
        self.assertIsNone(records[0].answer)

    @deferred_test
    async def test_call_record_application(self) -> None:
        """A call record keeps the application that answered it and its VOICEMAIL disposition."""
        record = call(10.0, disposition="VOICEMAIL", application="voicemail")
        new_id = await self.store.add_call_record(record)
        _, records = await self.store.list_call_records()
        self.assertEqual(records, [record])
        self.assertEqual(
            (records[0].id, records[0].disposition, records[0].application),
            (new_id, "VOICEMAIL", "voicemail"),
        )

    @deferred_test
    async def test_call_record_trunk(self) -> None:
        """A call out through a trunk keeps its trunk, dialled and sent numbers and cost."""
        record = call(10.0, trunk="carrier", dialled="95552345678", sent="+15552345678", cost=0.0125)
        await self.store.add_call_record(record)
        _, [stored] = await self.store.list_call_records()
        self.assertEqual((stored.trunk, stored.dialled, stored.sent, stored.cost),
                         ("carrier", "95552345678", "+15552345678", 0.0125))

    @deferred_test
    async def test_call_record_verstat(self) -> None:
        """A call from a trunk keeps what STIR/SHAKEN verification said of its caller."""
        record = call(10.0, trunk="carrier", dialled="+15551230000", verstat="TN-Validation-Passed")
        await self.store.add_call_record(record)
        _, [stored] = await self.store.list_call_records()
        self.assertEqual((stored.trunk, stored.verstat), ("carrier", "TN-Validation-Passed"))

    @deferred_test
    async def test_list_call_records_paging(self) -> None:
        """Call records come newest first, one page at a time, with the total count."""
        for start in (30.0, 10.0, 50.0, 20.0, 40.0):
            await self.store.add_call_record(call(start))
        total, page = await self.store.list_call_records(offset=1, limit=2)
        self.assertEqual((total, [r.start for r in page]), (5, [40.0, 30.0]))
        total, page = await self.store.list_call_records(offset=10, limit=2)
        self.assertEqual((total, page), (5, []))

    @deferred_test
    async def test_list_call_records_by_party(self) -> None:
        """Call records can be filtered by exact caller and callee."""
        await self.store.add_call_record(call(1.0, "100", "200"))
        await self.store.add_call_record(call(2.0, "100", "300"))
        await self.store.add_call_record(call(3.0, "200", "300"))
        total, page = await self.store.list_call_records(caller="100")
        self.assertEqual((total, [r.start for r in page]), (2, [2.0, 1.0]))
        total, page = await self.store.list_call_records(callee="300")
        self.assertEqual((total, [r.start for r in page]), (2, [3.0, 2.0]))
        total, page = await self.store.list_call_records(caller="100", callee="300")
        self.assertEqual((total, [r.start for r in page]), (1, [2.0]))
        self.assertEqual(await self.store.list_call_records(caller="10"), (0, []))

    @deferred_test
    async def test_list_call_records_by_time(self) -> None:
        """Call records can be filtered by start time: since inclusive, until exclusive."""
        for start in (10.0, 20.0, 30.0, 40.0):
            await self.store.add_call_record(call(start))
        total, page = await self.store.list_call_records(since=20.0, until=40.0)
        self.assertEqual((total, [r.start for r in page]), (2, [30.0, 20.0]))
        total, page = await self.store.list_call_records(since=25.0, limit=1)
        self.assertEqual((total, [r.start for r in page]), (2, [40.0]))

    @deferred_test
    async def test_list_call_records_by_linked_id(self) -> None:
        """A record's linked id defaults to its call id; filtering by it gives every leg of one conversation."""
        await self.store.add_call_record(call(1.0, call_id="x1"))
        await self.store.add_call_record(call(2.0, call_id="x2", leg="b", linked_id="x1"))
        await self.store.add_call_record(call(3.0, call_id="y1"))
        total, page = await self.store.list_call_records(linked_id="x1")
        self.assertEqual((total, [(r.call_id, r.linked_id) for r in page]), (2, [("x2", "x1"), ("x1", "x1")]))
        self.assertEqual(await self.store.list_call_records(linked_id="x2"), (0, []))

    @deferred_test
    async def test_list_call_records_negative_limit(self) -> None:
        """A negative limit or offset fails the Deferred with ValueError."""
        d = self.store.list_call_records(limit=-1)
        self.failureResultOf(d, ValueError)
        d = self.store.list_call_records(offset=-1)
        self.failureResultOf(d, ValueError)

    # Audit trail

    @deferred_test
    async def test_audit_newest_first(self) -> None:
        """Audit events come newest first with their ids, at most ``limit`` of them."""
        ids = []
        for time in (1.0, 3.0, 2.0):
            ids.append(
                await self.store.add_audit(
                    AuditEvent(time, "api.login", "admin", "192.0.2.1", f"t={time}")
                )
            )
        events = await self.store.list_audit()
        self.assertEqual([e.time for e in events], [3.0, 2.0, 1.0])
        self.assertEqual([e.id for e in events], [ids[1], ids[2], ids[0]])
        self.assertEqual(
            events[0], AuditEvent(3.0, "api.login", "admin", "192.0.2.1", "t=3.0")
        )
        self.assertEqual(
            [e.time for e in await self.store.list_audit(limit=2)], [3.0, 2.0]
        )

    @deferred_test
    async def test_audit_by_kind(self) -> None:
        """Audit events can be filtered by exact kind."""
        await self.store.add_audit(AuditEvent(1.0, "sip.auth.failure", "100"))
        await self.store.add_audit(AuditEvent(2.0, "api.login", "admin"))
        await self.store.add_audit(AuditEvent(3.0, "sip.auth.failure", "200"))
        events = await self.store.list_audit(kind="sip.auth.failure")
        self.assertEqual([e.subject for e in events], ["200", "100"])
        self.assertEqual(await self.store.list_audit(kind="sip.auth"), [])

    # Administrators

    @deferred_test
    async def test_admins(self) -> None:
        """An administrator is stored, found by name and replaced by a second put."""
        self.assertIsNone(await self.store.get_admin("admin"))
        await self.store.put_admin(AdminRecord("admin", "hash-1"))
        self.assertEqual(
            await self.store.get_admin("admin"), AdminRecord("admin", "hash-1")
        )
        await self.store.put_admin(AdminRecord("admin", "hash-2"))
        self.assertEqual(
            await self.store.get_admin("admin"), AdminRecord("admin", "hash-2")
        )
        self.assertIsNone(await self.store.get_admin("Admin"))

    # Settings

    @deferred_test
    async def test_settings(self) -> None:
        """A setting is stored, read back and replaced by a second put."""
        self.assertIsNone(await self.store.get_setting("api.secret"))
        await self.store.put_setting("api.secret", "one")
        self.assertEqual(await self.store.get_setting("api.secret"), "one")
        await self.store.put_setting("api.secret", "two")
        self.assertEqual(await self.store.get_setting("api.secret"), "two")
        await self.store.put_setting("empty", "")
        self.assertEqual(await self.store.get_setting("empty"), "")

    # Feature documents

    @deferred_test
    async def test_items_put_get_replace_delete(self) -> None:
        """A document is stored as JSON, read back, replaced, and deleted once."""
        self.assertIsNone(await self.store.get_item("vm.message", "1001", "a"))
        doc = {"caller": "1002", "duration": 4.5, "heard": False, "tags": ["x"], "conf": None}
        await self.store.put_item("vm.message", "1001", "a", doc)
        self.assertEqual(await self.store.get_item("vm.message", "1001", "a"), doc)
        await self.store.put_item("vm.message", "1001", "a", {"caller": "1003"})
        self.assertEqual(await self.store.get_item("vm.message", "1001", "a"), {"caller": "1003"})
        self.assertIsNone(await self.store.get_item("vm.message", "1002", "a"))
        self.assertIsNone(await self.store.get_item("other", "1001", "a"))
        self.assertTrue(await self.store.delete_item("vm.message", "1001", "a"))
        self.assertFalse(await self.store.delete_item("vm.message", "1001", "a"))
        self.assertIsNone(await self.store.get_item("vm.message", "1001", "a"))

    @deferred_test
    async def test_items_listed_by_kind_and_owner_in_order(self) -> None:
        """Listing filters by kind and owner and orders by owner, then key, bytewise."""
        for owner, key in [("1002", "b"), ("1001", "b"), ("1001", "a"), ("1001", "B")]:
            await self.store.put_item("k", owner, key, {"n": owner + key})
        await self.store.put_item("other", "1001", "z", {"n": "no"})
        everything = await self.store.list_items("k")
        self.assertEqual([(o, k) for o, k, _ in everything],
                         [("1001", "B"), ("1001", "a"), ("1001", "b"), ("1002", "b")])
        mine = await self.store.list_items("k", owner="1001")
        self.assertEqual([d["n"] for _, _, d in mine], ["1001B", "1001a", "1001b"])
        self.assertEqual(await self.store.list_items("k", owner="9999"), [])

    @deferred_test
    async def test_items_search_is_case_insensitive_and_literal(self) -> None:
        """Search matches a substring of the document, ignoring ASCII case; % and _ are literal."""
        await self.store.put_item("t", "1", "a", {"transcript": "Please CALL me back"})
        await self.store.put_item("t", "1", "b", {"transcript": "invoice 100% paid"})
        await self.store.put_item("t", "2", "c", {"transcript": "call about the_report"})
        found = await self.store.list_items("t", search="call")
        self.assertEqual([k for _, k, _ in found], ["a", "c"])
        self.assertEqual([k for _, k, _ in await self.store.list_items("t", owner="2", search="CALL")], ["c"])
        self.assertEqual([k for _, k, _ in await self.store.list_items("t", search="100%")], ["b"])
        self.assertEqual([k for _, k, _ in await self.store.list_items("t", search="the_r")], ["c"])
        self.assertEqual(await self.store.list_items("t", search="x_y"), [])
        self.assertEqual(await self.store.list_items("t", search="%"), [(o, k, d) for o, k, d in
                         await self.store.list_items("t") if "%" in d["transcript"]])

    @deferred_test
    async def test_items_keep_awkward_text(self) -> None:
        """Quotes, placeholders and non-ASCII text in keys and data are data."""
        await self.store.put_item(AWKWARD, AWKWARD, AWKWARD, {AWKWARD: AWKWARD})
        self.assertEqual(await self.store.get_item(AWKWARD, AWKWARD, AWKWARD), {AWKWARD: AWKWARD})
        (found,) = await self.store.list_items(AWKWARD, search="zoë 名前")
        self.assertEqual(found, (AWKWARD, AWKWARD, {AWKWARD: AWKWARD}))

    @deferred_test
    async def test_awkward_text_survives(self) -> None:
        """Quotes, placeholders and non-ASCII text are stored as data, never as SQL."""
        await self.store.put_setting(AWKWARD, AWKWARD)
        self.assertEqual(await self.store.get_setting(AWKWARD), AWKWARD)
        await self.store.put_extension(extension(AWKWARD, name=AWKWARD))
        self.assertEqual(
            await self.store.get_extension(AWKWARD), extension(AWKWARD, name=AWKWARD)
        )
        await self.store.add_audit(AuditEvent(1.0, AWKWARD, detail=AWKWARD))
        (event,) = await self.store.list_audit(kind=AWKWARD)
        self.assertEqual(event.detail, AWKWARD)

    # Journal of live calls

    def entries(self, node: str, call_key: str, start: float) -> list[LiveCallEntry]:
        """The journal entries of one answered two-leg call, touched at its answer."""
        return [
            LiveCallEntry(node, call_key, "a", call_key, "100", "200", start, start + 5.0,
                          "PCMU", "", start + 5.0),
            LiveCallEntry(node, call_key, "b", f"{call_key}-b", "100", AWKWARD, start + 0.5,
                          start + 5.0, "PCMU", "", start + 5.0),
        ]

    @deferred_test
    async def test_finished_call_leaves_no_entry(self) -> None:
        """A journalled call's records stored by finish_call remove its entries: recovery finds nothing."""
        await self.store.journal_calls(self.entries("n1", "c1", 10.0))
        records = [call(10.0, call_id="c1"), call(10.5, call_id="c1-b", leg="b")]
        await self.store.finish_call("n1", "c1", records)
        self.assertEqual(await self.store.recover_calls("n1"), [])
        total, stored = await self.store.list_call_records()
        self.assertEqual((total, sorted(stored, key=lambda r: r.leg)), (2, records))

    @deferred_test
    async def test_recover_interrupted_calls(self) -> None:
        """Entries left behind become INTERRUPTED records ending at the last touch, once only."""
        await self.store.journal_calls(self.entries("n1", "c1", 10.0))
        await self.store.journal_calls(self.entries("n1", "c2", 20.0))
        self.assertEqual(await self.store.touch_calls("n1", 95.0), 4)
        recovered = await self.store.recover_calls("n1")
        self.assertEqual(
            [(r.call_id, r.leg, r.disposition, r.answer, r.end, r.callee) for r in recovered],
            [("c1", "a", "INTERRUPTED", 15.0, 95.0, "200"),
             ("c1-b", "b", "INTERRUPTED", 15.0, 95.0, AWKWARD),
             ("c2", "a", "INTERRUPTED", 25.0, 95.0, "200"),
             ("c2-b", "b", "INTERRUPTED", 25.0, 95.0, AWKWARD)],
        )
        total, stored = await self.store.list_call_records()
        self.assertEqual(total, 4)
        self.assertEqual({r.id for r in stored}, {r.id for r in recovered})
        self.assertEqual(await self.store.recover_calls("n1"), [])

    @deferred_test
    async def test_recovery_is_per_node(self) -> None:
        """Recovering one node leaves another node's live calls (and its touches) alone."""
        await self.store.journal_calls(self.entries("n1", "c1", 10.0))
        await self.store.journal_calls(self.entries("n2", "c2", 20.0))
        self.assertEqual(await self.store.touch_calls("n2", 50.0), 2)
        self.assertEqual([r.call_id for r in await self.store.recover_calls("n1")], ["c1", "c1-b"])
        self.assertEqual([r.end for r in await self.store.recover_calls("n2")], [50.0, 50.0])

    @deferred_test
    async def test_finish_call_goes_on(self) -> None:
        """
        finish_call with live entries (a transfer) stores the departed
        record and replaces the call's entries: recovery gives the parties
        in the call now, with their linked id.
        """
        await self.store.journal_calls(self.entries("n1", "c1", 10.0))
        departed = call(10.5, call_id="c1-b", leg="b", hangup_cause="transferred to 300")
        now = LiveCallEntry("n1", "c1", "b", "c1-c", "100", "300", 30.0, 32.0, "PCMU", "", 32.0, "c1")
        await self.store.finish_call("n1", "c1", [departed], [self.entries("n1", "c1", 10.0)[0], now])
        total, stored = await self.store.list_call_records()
        self.assertEqual((total, stored), (1, [departed]))
        recovered = await self.store.recover_calls("n1")
        self.assertEqual(
            [(r.call_id, r.leg, r.callee, r.answer, r.linked_id) for r in recovered],
            [("c1", "a", "200", 15.0, "c1"), ("c1-c", "b", "300", 32.0, "c1")],
        )

    @deferred_test
    async def test_journal_replaces_entry(self) -> None:
        """Journalling a leg again replaces its entry rather than adding one."""
        first = self.entries("n1", "c1", 10.0)[0]
        await self.store.journal_calls([first])
        await self.store.journal_calls([LiveCallEntry(
            "n1", "c1", "a", "c1", "100", "200", 10.0, 15.0, "PCMA", "echo", 40.0)])
        (record,) = await self.store.recover_calls("n1")
        self.assertEqual((record.codecs, record.application, record.end), ("PCMA", "echo", 40.0))

    @deferred_test
    async def test_concurrent_group_writes(self) -> None:
        """Audit events, call records and journal writes issued at once all land, each with its own id."""
        writes: list[Deferred[Any]] = [self.store.add_audit(AuditEvent(float(i), "k")) for i in range(30)]
        writes += [self.store.add_call_record(call(float(i))) for i in range(30)]
        writes += [self.store.journal_calls(self.entries("n1", f"c{i}", float(i))) for i in range(10)]
        results = await gatherResults(writes, consumeErrors=True)
        self.assertEqual(len(set(results[:30])), 30)
        self.assertEqual(len(set(results[30:60])), 30)
        self.assertEqual(len(await self.store.list_audit(limit=1000)), 30)
        self.assertEqual(len(await self.store.recover_calls("n1")), 20)

    # Concurrency

    @deferred_test
    async def test_concurrent_writes(self) -> None:
        """Fifty bindings and fifty audit events written at once all land."""
        writes = [
            self.store.put_binding(binding("100", f"sip:{i:02d}@x")) for i in range(50)
        ]
        writes += [self.store.add_audit(AuditEvent(float(i), "k")) for i in range(50)]
        results = await gatherResults(writes, consumeErrors=True)
        bindings = await self.store.list_bindings("100")
        self.assertEqual(
            [b.contact for b in bindings], [f"sip:{i:02d}@x" for i in range(50)]
        )
        self.assertEqual(len(set(results[50:])), 50)
        self.assertEqual(len(await self.store.list_audit(limit=1000)), 50)


class SQLStoreSuiteMixin(StoreSuiteMixin):
    """The shared store tests plus those of the SQL schema's migrations."""

    async def migrate_to(self, store: SQLStore, version: int) -> None:
        """Apply the migrations up to ``version`` only, as an older pbx did."""
        await store._run_operation(store._dialect.sql(schema.VERSION_TABLE))
        record = store._dialect.sql(
            "INSERT INTO schema_version (version, description) VALUES ({p}, {p})"
        )
        for migration in schema.MIGRATIONS:
            if migration.version > version:
                break
            statements: list[tuple[str, tuple[object, ...]]] = [
                (sql, ()) for sql in migration.render(store._dialect)
            ]
            statements.append((record, (migration.version, migration.description)))
            await store._run_interaction(statements)

    @deferred_test
    async def test_call_records_gain_application(self) -> None:
        """A version 4 database's call records read back with no application once migrated."""
        store = await self.make_store()
        assert isinstance(store, SQLStore)
        self.addCleanup(store.close)
        await self.migrate_to(store, 4)
        await store._run_operation(
            store._dialect.sql(
                'INSERT INTO call_records (call_id, caller, callee, start, "end",'
                " answer, disposition, hangup_side, hangup_cause, codecs, leg)"
                " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
            ),
            ("c1", "100", "200", 1.0, 2.0, None, "NO ANSWER", "pbx", "480", "", "a"),
        )
        self.assertEqual(await store.migrate(), LATEST_VERSION)
        _, records = await store.list_call_records()
        self.assertEqual(
            [(r.call_id, r.disposition, r.application) for r in records],
            [("c1", "NO ANSWER", "")],
        )

    @deferred_test
    async def test_shared_transaction_failure_spares_the_others(self) -> None:
        """A write that fails in a shared transaction fails alone; those committed with it are retried and land."""
        assert isinstance(self.store, SQLStore)
        # The first write goes alone; the rest queue behind it and share the next transaction.
        first = self.store.add_audit(AuditEvent(0.0, "k"))
        bad = self.store._grouped([("INSERT INTO no_such_table VALUES (1)", ())])
        good = [self.store.add_audit(AuditEvent(float(i), "k")) for i in range(1, 4)]
        ids = await gatherResults([first, *good], consumeErrors=True)
        self.assertEqual(len(set(ids)), 4)
        await self.assertFailure(bad, Exception)
        self.assertEqual(len(await self.store.list_audit()), 4)

    @deferred_test
    async def test_version_5_gains_the_journal(self) -> None:
        """A version 5 database migrates to an empty journal of live calls that works."""
        store = await self.make_store()
        assert isinstance(store, SQLStore)
        self.addCleanup(store.close)
        await self.migrate_to(store, 5)
        self.assertEqual(await store.migrate(), LATEST_VERSION)
        self.assertEqual(await store.recover_calls("n1"), [])
        await store.journal_calls(self.entries("n1", "c1", 10.0))
        self.assertEqual(len(await store.recover_calls("n1")), 2)

    @deferred_test
    async def test_version_6_call_records_gain_trunk_columns(self) -> None:
        """A version 6 database's call records read back with no trunk and no cost once migrated."""
        store = await self.make_store()
        assert isinstance(store, SQLStore)
        self.addCleanup(store.close)
        await self.migrate_to(store, 6)
        await store._run_operation(
            store._dialect.sql(
                'INSERT INTO call_records (call_id, caller, callee, start, "end",'
                " answer, disposition, hangup_side, hangup_cause, codecs, leg, application)"
                " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
            ),
            ("c1", "100", "200", 1.0, 2.0, 1.5, "ANSWERED", "a", "BYE", "PCMU", "a", ""),
        )
        self.assertEqual(await store.migrate(), LATEST_VERSION)
        _, records = await store.list_call_records()
        self.assertEqual([(r.call_id, r.trunk, r.dialled, r.sent, r.cost) for r in records],
                         [("c1", "", "", "", 0.0)])

    @deferred_test
    async def test_version_7_call_records_gain_verstat(self) -> None:
        """A version 7 database's call records read back with no verstat once migrated."""
        store = await self.make_store()
        assert isinstance(store, SQLStore)
        self.addCleanup(store.close)
        await self.migrate_to(store, 7)
        await store._run_operation(
            store._dialect.sql(
                'INSERT INTO call_records (call_id, caller, callee, start, "end",'
                " answer, disposition, hangup_side, hangup_cause, codecs, leg, application, trunk)"
                " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
            ),
            ("c1", "100", "200", 1.0, 2.0, 1.5, "ANSWERED", "a", "BYE", "PCMU", "a", "", "carrier"),
        )
        self.assertEqual(await store.migrate(), LATEST_VERSION)
        _, records = await store.list_call_records()
        self.assertEqual([(r.call_id, r.trunk, r.verstat) for r in records], [("c1", "carrier", "")])

    @deferred_test
    async def test_version_8_records_and_journal_gain_linked_id(self) -> None:
        """A version 8 database's records and journal entries are each their own conversation once migrated."""
        store = await self.make_store()
        assert isinstance(store, SQLStore)
        self.addCleanup(store.close)
        await self.migrate_to(store, 8)
        await store._run_operation(
            store._dialect.sql(
                'INSERT INTO call_records (call_id, caller, callee, start, "end",'
                " answer, disposition, hangup_side, hangup_cause, codecs, leg)"
                " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
            ),
            ("c1", "100", "200", 1.0, 2.0, 1.5, "ANSWERED", "a", "BYE", "PCMU", "a"),
        )
        await store._run_operation(
            store._dialect.sql(
                'INSERT INTO live_calls (node, "call", leg, call_id, caller, callee, start,'
                " answer, codecs, application, touched)"
                " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
            ),
            ("n1", "c2", "b", "c2-b", "100", "200", 5.0, 6.0, "PCMU", "", 9.0),
        )
        self.assertEqual(await store.migrate(), LATEST_VERSION)
        total, [record] = await store.list_call_records(linked_id="c1")
        self.assertEqual((total, record.call_id), (1, "c1"))
        [interrupted] = await store.recover_calls("n1")
        self.assertEqual((interrupted.call_id, interrupted.linked_id), ("c2-b", "c2"))

    @deferred_test
    async def test_pins_survive_the_rename(self) -> None:
        """A version 3 database's voicemail_pin_hash values are every extension's pin_hash once migrated."""
        store = await self.make_store()
        assert isinstance(store, SQLStore)
        self.addCleanup(store.close)
        await self.migrate_to(store, 3)
        insert = store._dialect.sql(
            "INSERT INTO extensions (number, name, email, realm, ha1_md5, ha1_sha256,"
            " voicemail_pin_hash, enabled, source) VALUES"
            " ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
        )
        for number, pin_hash in (("1001", "pbkdf2_sha256$1$salt$a"), ("1002", "")):
            await store._run_operation(
                insert, (number, "", "", "", "", "", pin_hash, 1, "config")
            )
        self.assertEqual(await store.migrate(), LATEST_VERSION)
        self.assertEqual(
            [(r.number, r.pin_hash) for r in await store.list_extensions()],
            [("1001", "pbkdf2_sha256$1$salt$a"), ("1002", "")],
        )
