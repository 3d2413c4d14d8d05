"""
Bringing the store in line with the configuration file at startup.

Extensions and API administrators named in YAML are written into the store;
from then on the store is the source of truth (the REST API edits it).  A
config entry with no password gets one generated the first time it is seen;
the generated secret is reported once, through the ``announce`` callable,
and never again: only its hash is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

from pbx.config import Config, ExtensionConfig
from pbx.interfaces import IStore
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.passwords import generate_password, hash_password
from pbx.sip.auth import compute_ha1


def extension_record(
    number: str,
    realm: str,
    *,
    name: str = "",
    email: str = "",
    password: str | None = None,
    pin_hash: str = "",
    source: str = "api",
    previous: ExtensionRecord | None = None,
) -> ExtensionRecord:
    """
    Build the stored form of an extension.

    The SIP password is kept only as digest HA1 values for ``realm``
    (RFC 7616 §3.4.2); with ``password=None`` the previous record's HA1s
    are kept.
    """
    if password is not None:
        ha1_md5 = compute_ha1(number, realm, password, "MD5")
        ha1_sha256 = compute_ha1(number, realm, password, "SHA-256")
    elif previous is not None:
        ha1_md5, ha1_sha256 = previous.ha1_md5, previous.ha1_sha256
    else:
        ha1_md5 = ha1_sha256 = ""
    return ExtensionRecord(
        number=number,
        name=name,
        email=email,
        realm=realm,
        ha1_md5=ha1_md5,
        ha1_sha256=ha1_sha256,
        pin_hash=pin_hash or (previous.pin_hash if previous else ""),
        enabled=previous.enabled if previous else True,
        source=source,
    )


def config_fingerprint(secret: bytes, ext: ExtensionConfig, realm: str) -> str:
    """A keyed digest of one extension's config entry, to skip unchanged ones."""
    entry = json.dumps(
        [ext.number, ext.name, ext.password, ext.pin, ext.email, realm]
    ).encode()
    return hmac.new(secret, entry, hashlib.sha256).hexdigest()


async def sync_extension(
    store: IStore,
    ext: ExtensionConfig,
    realm: str,
    announce: Callable[[str, str], None],
    secret: bytes,
    pin_hasher: Callable[[str], object] = hash_password,
) -> bool:
    """
    Write one configured extension into the store.

    A configured password always wins (it is re-hashed for the realm).
    Without one, an existing record keeps its secret unless the realm
    changed; a new extension gets a generated password, announced once.
    An entry unchanged since the last sync (same keyed fingerprint) whose
    record still exists is skipped, so restarts stay cheap.

    :returns: whether the store was written.
    """
    previous = await store.get_extension(ext.number)
    fingerprint = config_fingerprint(secret, ext, realm)
    mark = f"config.extension.{ext.number}"
    if previous is not None and await store.get_setting(mark) == fingerprint:
        return False
    password: str | None = ext.password or None
    if password is None and (previous is None or previous.realm != realm or not previous.ha1_md5):
        password = generate_password()
        announce(ext.number, password)
    pin_hash = ""
    if ext.pin:
        pin_hash = str(await _maybe_deferred(pin_hasher(ext.pin)))
    record = extension_record(
        ext.number,
        realm,
        name=ext.name,
        email=ext.email,
        password=password,
        pin_hash=pin_hash,
        source="config",
        previous=previous,
    )
    await store.put_extension(record)
    await store.put_setting(mark, fingerprint)
    return True


async def sync_admins(
    store: IStore,
    config: Config,
    announce: Callable[[str, str], None],
    hasher: Callable[[str], object],
) -> None:
    """
    Write the configured API administrators into the store.

    ``hasher`` maps a password to its PBKDF2 encoding (it may return a
    Deferred, so the 600,000 iterations can run off the reactor thread).
    An administrator with no configured password gets one generated at first
    start; one already stored keeps its hash unless the config gives a new
    password.
    """
    from pbx.security.passwords import verify_password

    for admin in config.api.admins:
        previous = await store.get_admin(admin.username)
        password = admin.password
        if password and previous is not None and verify_password(password, previous.password_hash):
            continue
        if not password:
            if previous is not None:
                continue
            password = generate_password(20)
            announce(admin.username, password)
        encoded = await _maybe_deferred(hasher(password))
        await store.put_admin(AdminRecord(admin.username, str(encoded)))


async def _maybe_deferred(value: object) -> object:
    from twisted.internet.defer import Deferred

    if isinstance(value, Deferred):
        return await value
    return value
