"""
Trunks: the lines between pbx and carriers (or other PBXs).

- :mod:`~pbx.trunks.config`: the ``trunks:`` and ``rates:`` sections.
- :mod:`~pbx.trunks.registration`: pbx keeps a REGISTER up with a carrier
  (RFC 3261 §10.2, digest, refresh, back-off); :mod:`~pbx.trunks.keepalive`
  pings with OPTIONS and marks the trunk up or down.
- :mod:`~pbx.trunks.registry`: which trunk an inbound INVITE comes from
  (``allow_from`` networks, or the registration carrier's address) and which
  DID it calls; the call controller then rings the DID's extension or runs its
  application, without a digest challenge.
- :mod:`~pbx.trunks.routes`: a ``trunk:`` dialplan route's attempts: the
  number sent (``strip``/``prepend``), the caller ID (the extension's E.164
  ``caller_id``, else the route's, else the trunk's), the order (least-cost by
  the rate table, optionally weighted).
- :mod:`~pbx.trunks.call`: a relayed call whose callee's leg is an INVITE to
  a trunk, answering its 401/407 with the trunk's credentials.  The controller
  tries the next trunk on 408, 5xx or no answer from the carrier in
  ``setup_timeout``, never on the callee's own answers (404, 486, 603).
- :mod:`~pbx.trunks.api` (``/api/v1/trunks/``: live state; trunks and
  the rate table changed live), :mod:`~pbx.trunks.stored` (what the API
  changed, kept in the store and put over the file's at start),
  :mod:`~pbx.trunks.routes_api` (``/api/v1/routes/``).

Hooks (:mod:`~pbx.trunks.hooks`) for what builds on trunks (STIR/SHAKEN
signing and verification, E911 location, calling permissions); a feature
reaches them as ``pbx.trunk_hooks`` (:class:`pbx.interfaces.IPBX`), the
switch as ``controller.trunks.hooks``::

    hooks = pbx.trunk_hooks
    hooks.outbound.append(sign)      # sign(OutboundContext) -> OutboundChange | None
    hooks.inbound.append(verify)     # verify(InboundContext) -> InboundVerdict | None

Outbound hooks run in order before each INVITE to a trunk, and may add
headers (``Identity``, ``Geolocation``), body parts beside the SDP
(multipart/mixed, e.g. a PIDF-LO) or refuse the call with a status.
Inbound verifiers run when a call comes from a trunk and may refuse it or
add notes (e.g. ``verstat``) logged with it.  Either may return a Deferred
or be a coroutine function.
"""
