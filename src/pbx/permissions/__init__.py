"""
Calling permissions and the toll-fraud guard.

- :mod:`~pbx.permissions.classes`: the classes of service (internal, local,
  national, international, premium) and the prefix table that classifies a
  dialled number (longest prefix wins; NANP by default);
- :mod:`~pbx.permissions.options`: the ``permissions:`` section;
- :mod:`~pbx.permissions.guard`: :class:`~pbx.permissions.guard.Guard`, the
  one question outbound routing asks before an outside call
  (:meth:`~pbx.permissions.guard.Guard.check`) and the release when it ends;
  emergency calls are never blocked, limited or counted;
- :mod:`~pbx.permissions.alerts`: tripped limits, logged, audited
  (``toll_fraud``) and listed until acknowledged;
- :mod:`~pbx.permissions.api`: ``/api/v1/permissions/`` (administrators).
"""
