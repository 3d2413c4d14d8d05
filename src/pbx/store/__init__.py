"""
Persistent state of the PBX: the backends of :class:`pbx.interfaces.IStore`
(:mod:`pbx.store.sqlite`, :mod:`pbx.store.postgres`), their schema, and the
caches in front of them.  :mod:`pbx.store.url` opens the one a database URL
names.
"""
