"""Tests for :mod:`pbx.calls.seats`: the SDP a joining party is offered."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.media import CallMedia, MediaError
from pbx.calls.seats import current_sdp, first_format
from pbx.media.sdp import parse_sdp

OFFER = (
    b"v=0\r\no=a 1 1 IN IP4 192.0.2.11\r\ns=-\r\nc=IN IP4 192.0.2.11\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=recvonly\r\n"
    b"m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
)


class CurrentSDPTests(SynchronousTestCase):
    """A party's SDP, cut down for a new peer."""

    def media(self, codecs: str = "PCMA", transcoding: bool = False) -> CallMedia:
        """Call media whose leg a offered :data:`OFFER` and agreed on ``codecs``."""
        media = CallMedia(
            session=None, address="127.0.0.1", codecs=codecs, transcoding=transcoding
        )
        media.offers["a"] = parse_sdp(OFFER)
        return media

    def test_codec_in_use_sendrecv(self) -> None:
        """Only the codec in use and telephone-event stay, with their attributes; sendrecv; other streams off."""
        sdp = current_sdp(self.media(), "a")
        audio, video = sdp.media
        self.assertEqual(list(audio.formats), ["8", "101"])
        names = [(n, v) for n, v in audio.attributes]
        self.assertIn(("rtpmap", "8 PCMA/8000"), names)
        self.assertIn(("fmtp", "101 0-16"), names)
        self.assertNotIn(("rtpmap", "0 PCMU/8000"), names)
        self.assertNotIn(("recvonly", None), names)
        self.assertEqual(video.port, 0)
        self.assertEqual(first_format(sdp), 8)

    def test_refused(self) -> None:
        """No SDP, no agreed codec, a codec not in the SDP, or a transcoded call: MediaError."""
        with self.assertRaises(MediaError):
            current_sdp(self.media(), "b")
        with self.assertRaises(MediaError):
            current_sdp(self.media(codecs=""), "a")
        with self.assertRaises(MediaError):
            current_sdp(self.media(codecs="G722"), "a")
        with self.assertRaises(MediaError):
            current_sdp(self.media(transcoding=True), "a")
