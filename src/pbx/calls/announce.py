"""
A prompt played into both legs of a relayed call: "this call is recorded".

Each leg is fed (:meth:`pbx.media.relay.RelaySession.feed`) a
:class:`~pbx.media.playout.Playout` of the prompt in the codec and payload
type that leg agreed, the way music on hold is, so while the prompt plays
each party hears it instead of the other; once it has played (its length,
on the clock), each leg that is still fed by it is unfed and the relay
carries the call unchanged again.  The prompt starts once both phones
send media (at most :data:`READY_WAIT` seconds after it was asked for), so
a phone still setting up its stream does not miss its start.  A leg whose
codec pbx has no plugin for is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from attrs import define

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pbx.calls.media import CallMedia
from pbx.interfaces import ICodec
from pbx.media.media_clock import MediaClock
from pbx.media.music import MusicClass
from pbx.media.playout import Playout

__all__ = ["RECORDED", "Announcer"]

#: The prompt a recording with ``announce: true`` plays.
RECORDED = "general/call-recorded"
#: Most seconds to wait for both phones' media before the prompt starts.
READY_WAIT = 2.0


@define(eq=False)
class Announcer:
    """
    Plays prompts into relayed calls.

    :ivar prompts: finds a prompt's file (``path(prompt_id, rate)``).
    :ivar load: reads a WAV file (a Deferred :class:`~pbx.media.wav.WavAudio`).
    """

    codecs: Mapping[str, ICodec]
    prompts: Any
    load: Any
    clock: MediaClock
    reactor: IReactorTime
    log = Logger()

    async def _media_up(self, media: CallMedia) -> None:
        """
        Wait (up to :data:`READY_WAIT` seconds) until both phones have sent
        RTP: a phone that has just answered, or just got the answer, may not
        take packets yet, and would miss the start of the prompt.
        """
        deadline = self.reactor.seconds() + READY_WAIT
        while self.reactor.seconds() < deadline and not media.session.closed:
            if all(media.session.leg(leg).rtp.last_seen is not None for leg in ("a", "b")):
                return
            tick: Deferred[None] = Deferred()
            self.reactor.callLater(self.clock.ptime, tick.callback, None)
            await tick

    async def play(self, media: CallMedia, prompt: str) -> bool:
        """
        Play ``prompt`` to both legs of the call whose media is ``media``;
        fires once it has played and the relay path is restored (False when
        no leg could hear it).
        """
        wav = await self.load(self.prompts.path(prompt, 8000))
        await self._media_up(media)
        samples = np.asarray(wav.samples, dtype=np.float64)
        if samples.ndim == 2:
            samples = samples.mean(axis=1)
        track = MusicClass(prompt, wav.sample_rate, samples / 32768.0)
        session = media.session
        fed: dict[str, Any] = {}
        for leg in ("a", "b"):
            spec = next((c for c in media.agreed.get(leg) or [] if not c.is_auxiliary), None)
            codec = self.codecs.get(spec.encoding.lower()) if spec is not None else None
            if spec is None or codec is None or spec.payload_type is None:
                self.log.info("no announcement to leg {leg}: codec not ours", leg=leg)
                continue
            session.feed(leg, Playout(track, codec, self.clock), spec.payload_type)
            fed[leg] = session.feeding(leg)
        if not fed:
            return False
        done: Deferred[None] = Deferred()
        self.reactor.callLater(track.seconds, done.callback, None)
        await done
        for leg, feed in fed.items():
            if session.feeding(leg) is feed:  # not since fed by something else (a hold)
                session.unfeed(leg)
        return True
