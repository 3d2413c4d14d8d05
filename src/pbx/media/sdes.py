"""
SDES (RFC 4568) in offer/answer: which leg of a call speaks SRTP, with
which keys, as each leg's policy allows.

pbx anchors media, so each leg of a call keys its own SRTP: pbx answers a
phone's ``a=crypto`` with a key of its own for that leg, and offers the
other leg fresh keys.  The offer/answer code of :mod:`pbx.media.offer_answer`
speaks plain RTP; this module sits around it:

- :func:`take_offer` checks an offer against the leg's policy and its
  signalling channel and returns its plain view (``RTP/AVP``, no keys);
  :func:`secure_answer` turns pbx's answer to it back into SRTP.
- :func:`secure_offer` makes pbx's offer to a leg SRTP (``RTP/SAVP`` and one
  ``a=crypto`` line per suite); :func:`take_answer` reads the key the
  phone answered with.
- :meth:`LegKeys.contexts` gives the relay the leg's :class:`LegCrypto`.

A leg's policy (:class:`SrtpPolicy`): ``off`` never keys it, ``offered``
takes SRTP when its phone offers it and offers SRTP to it when the other
leg is encrypted, ``required`` refuses plain RTP (``488``).  Keys travel
only where signalling is encrypted (TLS): RFC 4568 §8.3 says SDES needs a
secure channel, so an ``RTP/SAVP`` offer over UDP or TCP is refused and a
best-effort ``a=crypto`` on ``RTP/AVP`` is ignored.

Nothing here imports Twisted.
"""

from __future__ import annotations

from attrs import define, evolve, field

from pbx.media.offer_answer import NotAcceptable
from pbx.media.sdp import MediaDescription, SessionDescription
from pbx.media.srtp import SUITES, Crypto, LegCrypto, crypto_lines, new_crypto
from pbx.media.srtp_policy import POLICIES, SrtpPolicy

__all__ = [
    "POLICIES",
    "LegKeys",
    "SrtpPolicy",
    "plain_view",
    "secure_answer",
    "secure_offer",
    "take_answer",
    "take_offer",
]


#: SRTP profiles (RFC 3711 §12, RFC 5124) and the plain ones pbx relays them as.
_SECURE_PROTOS = {"RTP/SAVP": "RTP/AVP", "RTP/SAVPF": "RTP/AVPF"}


@define(eq=False)
class LegKeys:
    """
    The SDES state of one leg.

    :ivar policy: an :class:`SrtpPolicy` value.
    :ivar secure: whether the leg's signalling is encrypted (TLS).
    :ivar theirs: the key the phone sends with, once agreed.
    :ivar protos: the ``m=`` protocols of the phone's last offer (pbx answers with the same).
    :ivar offered: the ``a=crypto`` lines of pbx's last offer to the leg (none: a plain offer).
    """

    policy: str = SrtpPolicy.OFFERED
    secure: bool = False
    theirs: Crypto | None = None
    protos: list[str] = field(factory=list)
    offered: list[Crypto] = field(factory=list)
    _ours: dict[str, Crypto] = field(factory=dict)
    _contexts: LegCrypto | None = None

    def ours(self, suite: str) -> Crypto:
        """pbx's key for this leg in ``suite``: drawn once, kept across re-offers (RFC 4568 §7.1.4)."""
        if suite not in self._ours:
            self._ours[suite] = new_crypto(suite, 1)
        return self._ours[suite]

    def wants_offer(self, other_encrypted: bool) -> bool:
        """Whether pbx's offer to this leg is SRTP: the policy allows it and requires it, or mirrors the other leg."""
        if not self.secure or self.policy == SrtpPolicy.OFF:
            return False
        return self.policy == SrtpPolicy.REQUIRED or other_encrypted

    @property
    def suite(self) -> str:
        """The suite in use, "" for plain RTP."""
        return self.theirs.suite if self.theirs is not None else ""

    def contexts(self) -> LegCrypto | None:
        """The relay's contexts for the agreed keys (the same object while they stay), None for plain RTP."""
        theirs = self.theirs
        if theirs is None:
            self._contexts = None
            return None
        ours = self.ours(theirs.suite)
        if self._contexts is None or not self._contexts.same_keys(theirs, ours):
            self._contexts = LegCrypto(theirs, ours)
        return self._contexts


def _audio_index(sdp: SessionDescription) -> int | None:
    """The stream pbx relays: the first audio stream with a port."""
    return next((i for i, m in enumerate(sdp.media) if m.media == "audio" and m.port), None)


def _plain_stream(media: MediaDescription) -> MediaDescription:
    proto = _SECURE_PROTOS.get(media.proto.upper(), media.proto)
    attributes = [a for a in media.attributes if a[0].lower() != "crypto"]
    return evolve(media, proto=proto, attributes=attributes)


def plain_view(sdp: SessionDescription) -> SessionDescription:
    """``sdp`` as plain RTP: SRTP profiles as their RTP ones, no ``a=crypto``."""
    return evolve(sdp, media=[_plain_stream(m) for m in sdp.media])


def take_offer(keys: LegKeys, offer: SessionDescription) -> SessionDescription:
    """
    A phone's offer on the leg of ``keys``: agree on its key, as the
    policy and the channel allow, and return its plain view.

    :raises NotAcceptable: (``488``) an ``RTP/SAVP`` offer where keys may
        not travel (not TLS, RFC 4568 §8.3) or SRTP is off, or with no suite
        pbx has; plain RTP where SRTP is required.
    """
    index = _audio_index(offer)
    theirs = None
    if index is not None:
        media = offer.media[index]
        savp = media.proto.upper() in _SECURE_PROTOS
        cryptos = crypto_lines(media.attribute_values("crypto"))
        if savp and not keys.secure:
            raise NotAcceptable("SRTP keys only over TLS (RFC 4568 §8.3)")
        if savp and keys.policy == SrtpPolicy.OFF:
            raise NotAcceptable("SRTP is off for this phone")
        if savp and not cryptos:
            raise NotAcceptable("no a=crypto suite pbx supports: " + ", ".join(SUITES))
        if keys.secure and keys.policy != SrtpPolicy.OFF and cryptos:
            # §7.1.1 leaves the choice to the answerer: the offerer's first usable line.
            theirs = cryptos[0]
    if theirs is None and keys.policy == SrtpPolicy.REQUIRED:
        raise NotAcceptable("SRTP is required for this phone")
    keys.theirs = theirs
    keys.protos = [m.proto for m in offer.media]
    return plain_view(offer)


def secure_answer(keys: LegKeys, answer: SessionDescription) -> SessionDescription:
    """
    pbx's answer to the offer :func:`take_offer` read, with the offer's
    protocols back and, where a key was agreed, pbx's key for the leg
    under the offer's tag and suite (RFC 4568 §7.1.2).
    """
    media = list(answer.media)
    if len(keys.protos) == len(media):
        media = [evolve(m, proto=p) for m, p in zip(media, keys.protos, strict=True)]
    index = _audio_index(answer)
    theirs = keys.theirs
    if theirs is not None and index is not None:
        ours = evolve(keys.ours(theirs.suite), tag=theirs.tag)
        m = media[index]
        media[index] = evolve(m, attributes=[*m.attributes, ("crypto", ours.to_value())])
    return evolve(answer, media=media)


def secure_offer(keys: LegKeys, offer: SessionDescription) -> SessionDescription:
    """
    pbx's (plain) offer to the leg of ``keys`` made SRTP: ``RTP/SAVP`` and
    one ``a=crypto`` line per suite of :data:`SUITES`, tags 1, 2, 3.
    """
    index = _audio_index(offer)
    if index is None:
        keys.offered = []
        return offer
    lines = [evolve(keys.ours(suite), tag=tag) for tag, suite in enumerate(SUITES, 1)]
    keys.offered = lines
    m = offer.media[index]
    proto = next((s for s, p in _SECURE_PROTOS.items() if p == m.proto.upper()), m.proto)
    attributes = [*m.attributes, *(("crypto", c.to_value()) for c in lines)]
    media = list(offer.media)
    media[index] = evolve(m, proto=proto, attributes=attributes)
    return evolve(offer, media=media)


def take_answer(keys: LegKeys, answer: SessionDescription) -> SessionDescription:
    """
    A phone's answer to pbx's offer on the leg of ``keys``: the key it
    chose, under one of the tags pbx offered (RFC 4568 §7.1.3); its plain view.

    Keys in an answer from a phone not on TLS are ignored (it got no keys).

    :raises NotAcceptable: SRTP is required and the answer has no key pbx
        offered, or the answer names a tag or suite pbx did not offer.
    """
    index = _audio_index(answer)
    theirs = None
    # A phone that got the offer without keys (not on TLS) cannot answer with one of them.
    if index is not None and keys.offered and keys.secure:
        offered = {c.tag: c for c in keys.offered}
        for crypto in crypto_lines(answer.media[index].attribute_values("crypto")):
            mine = offered.get(crypto.tag)
            if mine is None or mine.suite != crypto.suite:
                raise NotAcceptable(f"answered a=crypto tag {crypto.tag} that pbx did not offer")
            theirs = crypto
            break
    if theirs is None and keys.policy == SrtpPolicy.REQUIRED:
        raise NotAcceptable("SRTP is required for this phone")
    keys.theirs = theirs
    return plain_view(answer)
