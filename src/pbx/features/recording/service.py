"""
The recording service: what the feature runs inside a PBX.

It follows every call through call events: when a relayed two-party call
is answered it takes the call's media (:meth:`pbx.interfaces.IPBX.tap_call`),
starts recording at once when policy says so (``always``, ``trunks``,
``routes``: :mod:`pbx.features.recording.policy`, the trunk and route
read from the ``answered`` event), and watches
the toggle keys; when the call ends its recording is finished.  The API
and the toggle start, stop, pause and resume recordings through
:meth:`RecordingService.start` and friends.  A sweep deletes recordings
past their retention once an hour.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pbx.features.recording.errors import NotRecording
from pbx.interfaces import IPBX

if TYPE_CHECKING:
    from pbx.calls.events import CallEvent
    from pbx.features.recording.library import Library
    from pbx.features.recording.options import RecordingOptions
    from pbx.features.recording.recorder import CallRecorder
    from pbx.features.recording.watch import CallWatch

__all__ = ["RecordingService"]

SWEEP_INTERVAL = 3600.0


class RecordingService(Service):
    """
    Records relayed calls in a PBX.

    :param pbx: the running PBX.
    :param options: the feature's options.
    """

    log = Logger()

    def __init__(self, pbx: IPBX, options: RecordingOptions) -> None:
        self.pbx = pbx
        self.options = options
        self.library: Library | None = None
        self.watches: dict[str, CallWatch] = {}
        self.ready: Deferred[None] | None = None
        self._unsubscribe: Any = None
        self._sweeper: LoopingCall | None = None
        self._stored: dict[str, Deferred[None]] = {}

    def directory(self) -> str:
        """The recordings directory: the option, under ``state_dir`` when relative."""
        return os.path.join(
            self.pbx.config.state_dir, os.path.expanduser(self.options.dir)
        )

    def startService(self) -> None:  # noqa: N802 - twisted API
        """
        Follow calls and mount the API now; make the directory before the PBX
        is ready; repair interrupted recordings and start the sweep in the
        background.
        """
        from pbx.features.recording.api import RecordingAPI, openapi_paths
        from pbx.features.recording.library import Library
        from pbx.features.recording.policy import check_names

        check_names(self.options.trunks, self.options.routes, self.pbx.config)
        super().startService()
        self.library = Library(
            self.pbx.store, self.directory(), self.pbx.clock, self.pbx.run_in_thread
        )
        self._unsubscribe = self.pbx.subscribe_calls(self._event, ("answered", "ended"))
        self._provide_rooms()
        self.pbx.mount_api(
            "recordings", RecordingAPI(self.pbx, self).resource(), openapi_paths()
        )
        # The directory exists before the first call can be recorded.
        self.pbx.before_ready(self.library.prepare)
        self.ready = Deferred.fromCoroutine(self._recover())
        self.ready.addErrback(
            lambda f: self.log.failure("recording: start-up work failed", f)
        )

    def _provide_rooms(self) -> None:
        """Offer conference rooms a recorder of their mix (:class:`IRoomRecordings`)."""
        from pbx.features.recording.interfaces import IRoomRecordings
        from pbx.features.recording.rooms import RoomRecordings

        self.pbx.provide(
            IRoomRecordings, RoomRecordings(lambda: self.library, self.pbx.run_in_thread)
        )

    async def _recover(self) -> None:
        assert self.library is not None
        await self.library.prepare()
        kept = await self.library.recover()
        self.log.info(
            "recordings in {directory} ({kept} interrupted recording(s) recovered)",
            directory=self.library.directory,
            kept=kept,
        )
        if self.options.retention_days > 0 and self.running:
            self._sweeper = LoopingCall(self._sweep)
            self._sweeper.clock = self.pbx.clock
            self._sweeper.start(SWEEP_INTERVAL, now=True)

    def _sweep(self) -> Deferred[None]:
        assert self.library is not None

        async def sweep() -> None:
            assert self.library is not None
            gone = await self.library.sweep(self.options.retention_days)
            if gone:
                self.log.info("retention: {gone} recording(s) deleted", gone=gone)

        d = Deferred.fromCoroutine(sweep())
        return d.addErrback(lambda f: self.log.failure("retention sweep failed", f))

    def stopService(self) -> Deferred[Any]:  # noqa: N802 - twisted API
        """Finish every running recording; stop following calls."""
        super().stopService()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        finishing = [self._end(call_id) for call_id in list(self.watches)]
        return DeferredList(finishing, consumeErrors=True)

    # -- calls ---------------------------------------------------------------------

    def _event(self, event: CallEvent) -> None:
        if event.kind == "answered":
            self._answered(event)
        elif event.kind == "ended" and event.call_id in self.watches:
            self._end(event.call_id).addErrback(
                lambda f: self.log.failure(
                    "finishing the recording of {call_id} failed",
                    f,
                    call_id=event.call_id,
                )
            )

    def _answered(self, event: CallEvent) -> None:
        tap = self.pbx.tap_call(event.call_id)
        if tap is None:
            return
        decision = self.options.decide(tap.caller, tap.callee, event.detail.get("trunk", ""),
                                       event.detail.get("route", ""))
        if decision is None and not self.options.toggle:
            return
        watch = self._watch(tap)
        if decision is not None:
            self.log.info("{call_id} recorded by policy: {rules}", call_id=event.call_id,
                          rules=", ".join(decision.rules))
            self._begin(watch, "policy", decision.announce)

    def _watch(self, tap: Any) -> CallWatch:
        from pbx.features.recording.watch import CallWatch

        watch = CallWatch(
            tap, self.options.toggle, lambda leg: self._toggled(tap.call_id, leg)
        )
        self.watches[tap.call_id] = watch
        watch.start()
        return watch

    def _end(self, call_id: str) -> Deferred[Any]:
        watch = self.watches.pop(call_id, None)
        if watch is None:
            return Deferred.fromCoroutine(_nothing())
        d = self._finish(watch)
        watch.stop()
        return d

    def _toggled(self, call_id: str, leg: str) -> None:
        """The toggle keys: start a recording, stop one started on demand, pause or resume a policy's."""
        watch = self.watches.get(call_id)
        if watch is None:
            return
        party = watch.parties[0 if leg == "a" else 1]
        if watch.recorder is None:
            self._begin(watch, f"keys:{party}")
        elif watch.meta is not None and watch.meta["started_by"] == "policy":
            if not watch.recorder.pause():
                watch.recorder.resume()
            self._note_pauses(watch)
        else:
            self._finish(watch).addErrback(
                lambda f: self.log.failure(
                    "stopping {call_id} failed", f, call_id=call_id
                )
            )
        self.log.info(
            "recording toggle pressed by {party} on {call_id}",
            party=party,
            call_id=call_id,
        )

    # -- recordings ------------------------------------------------------------------

    def _begin(self, watch: CallWatch, started_by: str, announce: bool | None = None) -> dict[str, Any]:
        """
        Start recording ``watch``'s call now; its metadata is stored in the
        background.  ``announce`` (None: the feature's ``announce``) plays
        "this call is recorded" to both parties.
        """
        from pbx.features.recording.recorder import CallRecorder, Downmix
        from pbx.media.wav import WavWriter

        assert self.library is not None
        tap = watch.tap
        rate = recording_rate(tap)
        stereo = self.options.format == "stereo"
        recording_id = self.library.new_id()
        pbx = self.pbx
        writer = WavWriter(
            self.library.path(recording_id),
            pbx.clock,
            threadpool=_NO_POOL,
            sample_rate=rate,
            channels=2 if stereo else 1,
            defer_to_thread_pool=lambda reactor, pool, f, *args: pbx.run_in_thread(
                f, *args
            ),
        )
        now = pbx.clock.seconds()
        meta: dict[str, Any] = {
            "id": recording_id,
            "call_id": tap.call_id,
            "caller": tap.caller,
            "callee": tap.callee,
            "started": now,
            "ended": None,
            "duration": 0.0,
            "format": self.options.format,
            "rate": rate,
            "channels": 2 if stereo else 1,
            "codec": tap.codec,
            "status": "recording",
            "started_by": started_by,
            "pauses": [],
            "part": os.path.basename(writer.temp_path),
        }
        recorder = CallRecorder(
            writer if stereo else Downmix(writer),
            pbx.clock,
            tap.payload_types,
            tap.codecs,
        )
        watch.record(recorder, meta)
        self.log.info(
            "recording {id} of {call_id} ({caller} -> {callee}) started by {who}",
            id=recording_id,
            call_id=tap.call_id,
            caller=tap.caller,
            callee=tap.callee,
            who=started_by,
        )
        stored = Deferred.fromCoroutine(self.library.put(dict(meta)))
        stored.addErrback(
            lambda f: self.log.failure(
                "storing recording {id} failed", f, id=recording_id
            )
        )
        self._stored[recording_id] = stored
        if self.options.announce if announce is None else announce:
            # Both parties hear "this call is recorded" (pbx.calls.announce).
            announced = Deferred.fromCoroutine(_announce(tap))
            announced.addErrback(
                lambda f: self.log.failure("announcing recording {id} failed", f, id=recording_id)
            )
        return meta

    def _note_pauses(self, watch: CallWatch) -> None:
        if watch.recorder is not None and watch.meta is not None:
            _note_pauses(watch.recorder, watch.meta)

    def _finish(self, watch: CallWatch) -> Deferred[dict[str, Any] | None]:
        recorder, meta = watch.unrecord()
        if recorder is None or meta is None:
            return Deferred.fromCoroutine(_nothing())
        _note_pauses(recorder, meta)
        library = self.library
        assert library is not None
        meta["ended"] = self.pbx.clock.seconds()
        stored = self._stored.pop(meta["id"], None)

        async def finish() -> dict[str, Any] | None:
            if stored is not None:
                await stored  # the first write of the metadata lands first
            try:
                await recorder.close()
            except Exception:
                self.log.failure("recording {id} failed", id=meta["id"])
                await library.store.delete_item("recording", "", meta["id"])
                return None
            await library.finished(meta)
            self.log.info(
                "recording {id} of {call_id} complete: {duration}s",
                id=meta["id"],
                call_id=meta["call_id"],
                duration=meta["duration"],
            )
            return meta

        return Deferred.fromCoroutine(finish())

    def live(self, call_id: str) -> tuple[Any, CallWatch | None]:
        """The call's tap and watch: :raises NotRecording: 404 when no such relayed call is up."""
        watch = self.watches.get(call_id)
        if watch is not None:
            return watch.tap, watch
        tap = self.pbx.tap_call(call_id)
        if tap is None:
            raise NotRecording(404, f"no answered relayed call {call_id}")
        return tap, None

    def start(self, call_id: str, started_by: str) -> dict[str, Any]:
        """Start recording live call ``call_id``; :raises NotRecording: 404 no call, 409 recording already."""
        tap, watch = self.live(call_id)
        if watch is None:
            watch = self._watch(tap)
        if watch.recorder is not None:
            raise NotRecording(409, "the call is being recorded already")
        return self._begin(watch, started_by)

    async def stop(self, call_id: str) -> dict[str, Any] | None:
        """Stop the recording of ``call_id``; fires with its final metadata once the file is complete."""
        _, watch = self.live(call_id)
        if watch is None or watch.recorder is None:
            raise NotRecording(409, "the call is not being recorded")
        return await self._finish(watch)

    def pause(self, call_id: str, pause: bool) -> dict[str, Any]:
        """Pause (silence from now on) or resume the recording of ``call_id``."""
        _, watch = self.live(call_id)
        if watch is None or watch.recorder is None or watch.meta is None:
            raise NotRecording(409, "the call is not being recorded")
        changed = watch.recorder.pause() if pause else watch.recorder.resume()
        if not changed:
            raise NotRecording(
                409,
                "the recording is paused already"
                if pause
                else "the recording is not paused",
            )
        self._note_pauses(watch)
        return dict(watch.meta, paused=watch.recorder.paused)


def _note_pauses(recorder: CallRecorder, meta: dict[str, Any]) -> None:
    """Copy the recorder's paused spans into ``meta`` as ``[from, to]`` seconds into the call's recording."""
    meta["pauses"] = [
        [(first or 0) / 50, None if after is None else after / 50]
        for first, after in recorder.paused_spans
    ]


async def _announce(tap: Any) -> None:
    """Play the recording announcement into the tapped call."""
    await tap.announce()


async def _nothing() -> None:
    return None


_NO_POOL: Any = object()
"""Stands for a thread pool: the writer's file work goes through ``IPBX.run_in_thread``."""


def recording_rate(tap: Any) -> int:
    """16 kHz when the call's codec (either side, if transcoded) is wideband, else 8 kHz."""
    codecs = [tap.codecs.get(name.lower()) for name in tap.codec.split("<>")]
    return (
        16000 if any(c is not None and c.sample_rate > 8000 for c in codecs) else 8000
    )
