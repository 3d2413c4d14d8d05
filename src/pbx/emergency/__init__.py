"""
E911: Kari's Law number recognition (:mod:`~pbx.emergency.numbers`),
dispatchable locations (RAY BAUM'S Act, :mod:`~pbx.emergency.locations`),
the PIDF-LO and headers an emergency INVITE carries
(:mod:`~pbx.emergency.pidf`, :mod:`~pbx.emergency.invite`), alerts
(:mod:`~pbx.emergency.mail`, :mod:`~pbx.emergency.event`), PSAP callback
(:mod:`~pbx.emergency.callback`), all put together in
:class:`~pbx.emergency.desk.EmergencyDesk`, and its REST routes
(:mod:`~pbx.emergency.api`).  Configured by the ``emergency:`` section
(:mod:`~pbx.emergency.options`).
"""
