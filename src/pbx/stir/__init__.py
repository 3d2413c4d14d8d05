"""
STIR/SHAKEN: signed caller ID for calls that cross a trunk.

An outbound INVITE gets an ``Identity`` header (RFC 8224) holding a SHAKEN
PASSporT (RFC 8225, RFC 8588, ATIS-1000074) signed with the site's
certificate; an inbound INVITE's ``Identity`` header is verified and the
outcome travels to the callee's phone as ``verstat`` (3GPP TS 24.229).

Pure modules (no Twisted): :mod:`.tn` (canonical numbers),
:mod:`.passport` (the JWS), :mod:`.identity` (the header),
:mod:`.attestation` (A, B or C), :mod:`.signer`, :mod:`.verifier`,
:mod:`.verdict` (the outcome and ``verstat``), :mod:`.certificates`
(chains to trust anchors), :mod:`.locations` (which ``x5u`` URLs may be
fetched), :mod:`.options` (the ``stir_shaken:`` section).  Twisted only in
:mod:`.x5u` (fetching certificates) and :mod:`.service`, which joins
everything into the two calls a trunk makes,
:meth:`.service.StirShaken.sign_outbound` and
:meth:`.service.StirShaken.verify_inbound`.  The switch joins them to
the trunks' hooks (:func:`pbx.trunks.joins.sign_calls`,
:func:`pbx.trunks.joins.verify_calls`).
"""
