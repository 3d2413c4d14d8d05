"""
Calls: the switch.

A call is legs plus media.  :mod:`~pbx.calls.inbound` is the caller's leg
(pbx as UAS), :mod:`~pbx.calls.forks` the legs towards the callee's phones
(pbx as UAC); both are Automat machines.  :mod:`~pbx.calls.call` relays
(:mod:`~pbx.calls.media`: SDP on the RTP relay), :mod:`~pbx.calls.app_call`
answers for an application and :mod:`~pbx.calls.outbound` places a leg for
one, both over :mod:`~pbx.calls.endpoint_media`.  The
:mod:`~pbx.calls.controller` dispatches SIP to calls and holds the policy
(:mod:`~pbx.calls.dialplan`, :mod:`~pbx.calls.routing`,
:mod:`~pbx.calls.divert`, :mod:`~pbx.calls.dial`); every call publishes
:mod:`~pbx.calls.events`, and :mod:`~pbx.calls.cdr` writes the records.
The controller's policy is split by concern into collaborators it builds
from the services they need: :mod:`~pbx.calls.trunk_entry` (calls from and
to trunks), :mod:`~pbx.calls.group_policy` (ring groups, follow-me),
:mod:`~pbx.calls.ring_outcome` (forward, divert or fail after ringing),
:mod:`~pbx.calls.answering` (applications and diversion),
:mod:`~pbx.calls.placing` (calls applications place),
:mod:`~pbx.calls.in_dialog` (requests within calls),
:mod:`~pbx.calls.media_watchdog` (calls whose media stopped) and
:mod:`~pbx.calls.session_timer` (RFC 4028).
"""
