"""Tests for :mod:`pbx.media.sdes`: SDES keying in offer/answer, by policy and channel."""

from __future__ import annotations

from attrs import evolve

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.offer_answer import NotAcceptable
from pbx.media.sdes import (
    LegKeys,
    plain_view,
    secure_answer,
    secure_offer,
    take_answer,
    take_offer,
)
from pbx.media.sdp import SessionDescription, parse_sdp
from pbx.media.srtp import SUITES, crypto_lines, new_crypto
from pbx.media.srtp_policy import SrtpPolicy

PHONE_KEY = new_crypto("AES_CM_128_HMAC_SHA1_32", 5)


def offer(proto: str = "RTP/SAVP", crypto: bool = True) -> SessionDescription:
    """A phone's one-stream PCMU offer."""
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0",
             f"m=audio 4000 {proto} 0", "a=rtpmap:0 PCMU/8000"]
    if crypto:
        lines += ["a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:" + "A" * 60,  # not ours: skipped
                  "a=crypto:" + PHONE_KEY.to_value()]
    return parse_sdp(("\r\n".join(lines) + "\r\n").encode())


def tls(policy: str = SrtpPolicy.OFFERED) -> LegKeys:
    """A leg on TLS."""
    return LegKeys(policy=policy, secure=True)


class TakeOfferTests(SynchronousTestCase):
    """A phone's offer: keys taken only where the policy and the channel allow."""

    def test_savp_over_tls(self) -> None:
        """RTP/SAVP over TLS: the first usable key is the phone's; pbx reasons about RTP/AVP without keys."""
        keys = tls()
        plain = take_offer(keys, offer())
        self.assertEqual(keys.theirs, PHONE_KEY)
        self.assertEqual(keys.suite, "AES_CM_128_HMAC_SHA1_32")
        self.assertEqual(plain.media[0].proto, "RTP/AVP")
        self.assertEqual(plain.media[0].attribute_values("crypto"), [])

    def test_savp_over_udp_refused(self) -> None:
        """RFC 4568 §8.3: keys never come over UDP or TCP; an SAVP offer there is 488."""
        with self.assertRaisesRegex(NotAcceptable, "only over TLS"):
            take_offer(LegKeys(secure=False), offer())

    def test_savp_when_off_refused(self) -> None:
        """Policy off: an SAVP offer is 488."""
        with self.assertRaisesRegex(NotAcceptable, "off"):
            take_offer(tls(SrtpPolicy.OFF), offer())

    def test_savp_without_our_suite_refused(self) -> None:
        """An SAVP offer with no suite pbx has is 488."""
        sdp = offer()
        only_theirs = [a for a in sdp.media[0].attributes if "AES_256" in (a[1] or "") or a[0] != "crypto"]
        sdp = evolve(sdp, media=[evolve(sdp.media[0], attributes=only_theirs)])
        with self.assertRaisesRegex(NotAcceptable, "suite"):
            take_offer(tls(), sdp)

    def test_best_effort_keys_ignored_where_not_allowed(self) -> None:
        """RTP/AVP with a=crypto over UDP, or with SRTP off: plain RTP, keys ignored."""
        for keys in (LegKeys(secure=False), tls(SrtpPolicy.OFF)):
            plain = take_offer(keys, offer("RTP/AVP"))
            self.assertIsNone(keys.theirs)
            self.assertEqual(plain.media[0].attribute_values("crypto"), [])

    def test_required_refuses_plain(self) -> None:
        """Policy required: a plain offer, over TLS or not, is 488."""
        for keys in (tls(SrtpPolicy.REQUIRED), LegKeys(policy=SrtpPolicy.REQUIRED)):
            with self.assertRaisesRegex(NotAcceptable, "required"):
                take_offer(keys, offer("RTP/AVP", crypto=False))


class AnswerTests(SynchronousTestCase):
    """pbx's answer to a keyed offer carries pbx's own key under the offer's tag."""

    def test_secure_answer(self) -> None:
        """SAVP again, tag and suite of the phone's line, a key of pbx's, kept across re-offers."""
        keys = tls()
        answer = secure_answer(keys, take_offer(keys, offer()))
        media = answer.media[0]
        self.assertEqual(media.proto, "RTP/SAVP")
        [ours] = crypto_lines(media.attribute_values("crypto"))
        self.assertEqual((ours.tag, ours.suite), (5, "AES_CM_128_HMAC_SHA1_32"))
        self.assertNotEqual(ours.material, PHONE_KEY.material)
        again = secure_answer(keys, take_offer(keys, offer()))
        self.assertEqual(crypto_lines(again.media[0].attribute_values("crypto")), [ours])

    def test_contexts_kept_while_keys_stay(self) -> None:
        """The relay's contexts stay the same object across a re-offer with the same key, and go with plain RTP."""
        keys = tls()
        take_offer(keys, offer())
        contexts = keys.contexts()
        self.assertIsNotNone(contexts)
        take_offer(keys, offer())
        self.assertIs(keys.contexts(), contexts)
        take_offer(keys, offer("RTP/AVP", crypto=False))
        self.assertIsNone(keys.contexts())
        self.assertEqual(keys.suite, "")


class OfferTests(SynchronousTestCase):
    """pbx's offers to a leg, and the phone's answers."""

    def test_wants_offer(self) -> None:
        """SRTP is offered on TLS when required, or when the other leg is encrypted (offered); never when off."""
        self.assertTrue(tls(SrtpPolicy.REQUIRED).wants_offer(False))
        self.assertTrue(tls().wants_offer(True))
        self.assertFalse(tls().wants_offer(False))
        self.assertFalse(tls(SrtpPolicy.OFF).wants_offer(True))
        self.assertFalse(LegKeys(policy=SrtpPolicy.REQUIRED).wants_offer(True))

    def test_offer_every_suite_and_take_answer(self) -> None:
        """One line per suite, tags 1-3; the answer's tag picks the suite and its key is the phone's."""
        keys = tls()
        sent = secure_offer(keys, plain_view(offer("RTP/AVP", crypto=False)))
        lines = crypto_lines(sent.media[0].attribute_values("crypto"))
        self.assertEqual(sent.media[0].proto, "RTP/SAVP")
        self.assertEqual([(c.tag, c.suite) for c in lines], list(enumerate(SUITES, 1)))
        phone = new_crypto("AEAD_AES_128_GCM", 3)
        answer = parse_sdp(sent.to_bytes().replace(b"a=crypto:1", b"a=crypto:" + phone.to_value().encode()
                                                    + b"\r\na=x-old:1"))
        plain = take_answer(keys, answer)
        self.assertEqual(keys.theirs, phone)
        self.assertEqual(plain.media[0].proto, "RTP/AVP")
        self.assertIsNotNone(keys.contexts())

    def test_answer_with_a_tag_not_offered(self) -> None:
        """An answer naming a tag or suite pbx did not offer is refused."""
        keys = tls()
        secure_offer(keys, plain_view(offer("RTP/AVP", crypto=False)))
        wrong = offer()  # tag 5
        with self.assertRaisesRegex(NotAcceptable, "tag 5"):
            take_answer(keys, wrong)

    def test_plain_answer(self) -> None:
        """A plain answer (or keys from a phone off TLS) is plain RTP where allowed, refused where SRTP is required."""
        keys = tls()
        sent = secure_offer(keys, plain_view(offer("RTP/AVP", crypto=False)))
        take_answer(keys, offer("RTP/AVP", crypto=False))
        self.assertIsNone(keys.contexts())
        keys.secure = False  # a phone on UDP, given the offer without keys
        take_answer(keys, sent)
        self.assertIsNone(keys.contexts())
        keys.secure = True
        keys.policy = SrtpPolicy.REQUIRED
        with self.assertRaisesRegex(NotAcceptable, "required"):
            take_answer(keys, offer("RTP/AVP", crypto=False))
