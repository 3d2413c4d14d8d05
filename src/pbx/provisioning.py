"""
Bringing the store in line with the configuration file at startup.

Extensions and API administrators named in YAML are written into the store;
from then on the store is the source of truth (the REST API edits it).  A
config entry with no password gets one generated the first time it is seen;
the generated secret is reported once, through the ``announce`` callable,
and never again: only its hash is kept.

A forgotten secret is replaced, not recovered: :func:`reset_password` and
:func:`reset_pin` (``twistd pbx -c FILE --reset-password NAME``) store a new
generated one and return it to be shown once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

from attrs import evolve

from pbx.config import Config, ExtensionConfig
from pbx.interfaces import IStore
from pbx.records import AdminRecord, AuditEvent, ExtensionRecord
from pbx.security.passwords import generate_password, generate_pin, hash_password
from pbx.security.pending import PendingPINs, is_placeholder
from pbx.sip.auth import compute_ha1


class ResetError(Exception):
    """A secret cannot be reset; the message is one line for the operator."""


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
    srtp: str | None = None,
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
        srtp=srtp if srtp is not None else (previous.srtp if previous else "offered"),
    )


def config_fingerprint(secret: bytes, ext: ExtensionConfig, realm: str) -> str:
    """A keyed digest of one extension's config entry, to skip unchanged ones."""
    fields = [ext.number, ext.name, ext.password, ext.pin, ext.email, realm]
    if ext.pin_hash:  # appended only when given: older entries keep their fingerprint
        fields.append(ext.pin_hash)
    if ext.srtp != "offered":  # likewise: only a policy other than the default
        fields.append(f"srtp={ext.srtp}")
    entry = json.dumps(fields).encode()
    return hmac.new(secret, entry, hashlib.sha256).hexdigest()


async def sync_extension(
    store: IStore,
    ext: ExtensionConfig,
    realm: str,
    announce: Callable[[str, str], None],
    secret: bytes,
    pin_hasher: Callable[[str], object] = hash_password,
    pending: PendingPINs | None = None,
) -> bool:
    """
    Write one configured extension into the store.

    A configured password always wins (it is re-hashed for the realm).
    Without one, an existing record keeps its secret unless the realm
    changed; a new extension gets a generated password, announced once.
    An entry unchanged since the last sync (same keyed fingerprint) whose
    record still exists is skipped, so restarts stay cheap.

    With ``pending``, a PIN is stored as a placeholder and hashed later,
    off the startup path (:mod:`pbx.security.pending`); the entry is marked
    synced only once its hash is stored, so a start that stops before that
    does it again.

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
    pin_hash = ext.pin_hash
    if ext.pin and pending is not None:
        pin_hash = pending.hold(ext.pin)
    elif ext.pin:
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
        srtp=ext.srtp,
    )
    await store.put_extension(record)
    if ext.pin and pending is not None:

        async def synced() -> None:
            await store.put_setting(mark, fingerprint)

        pending.hash_later(ext.number, pin_hash, synced)
    else:
        await store.put_setting(mark, fingerprint)
    return True


async def drop_placeholders(store: IStore) -> list[str]:
    """
    Forget PIN placeholders left by an earlier run that stopped before their
    hash landed (:mod:`pbx.security.pending`): those PINs are set again, from
    the configuration or generated anew, like PINs never set.

    :returns: the extensions whose placeholder was dropped.
    """
    dropped = []
    for record in await store.list_extensions():
        if is_placeholder(record.pin_hash):
            await store.put_extension(evolve(record, pin_hash=""))
            dropped.append(record.number)
    return dropped


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


async def reset_password(
    store: IStore, config: Config, name: str, hasher: Callable[[str], object] = hash_password
) -> tuple[str, str]:
    """
    Give API administrator or extension ``name`` a new generated password.

    An administrator's is kept as a PBKDF2 hash, an extension's as digest
    HA1 values for ``sip.domain``.  A password written in the config file is
    refused: the next start would put it back.

    :returns: what was reset (``"API admin password"`` or ``"SIP
        password"``) and the new password, to be shown once.
    :raises ResetError: when ``name`` is unknown, ambiguous, or has its
        password in the config file.
    """
    admin = await store.get_admin(name)
    extension = await store.get_extension(name)
    if admin is not None and extension is not None:
        raise ResetError(f"{name!r} is both an API administrator and an extension")
    configured = {a.username: a.password for a in config.api.admins}
    configured.update((e.number, e.password) for e in config.extensions)
    if (admin or extension) and configured.get(name):
        raise ResetError(f"{name}'s password is set in {config.path}: change it there")
    if admin is not None:
        password = generate_password(20)
        encoded = await _maybe_deferred(hasher(password))
        await store.put_admin(AdminRecord(name, str(encoded)))
        kind = "API admin password"
    elif extension is not None:
        password = generate_password()
        realm = config.sip.domain
        await store.put_extension(
            extension_record(
                name, realm, name=extension.name, email=extension.email, password=password,
                source=extension.source, previous=extension,
            )
        )
        kind = "SIP password"
    else:
        raise ResetError(f"no API administrator or extension named {name!r}")
    await store.add_audit(AuditEvent(time.time(), "secret.reset", name, "command line", kind))
    return kind, password


async def reset_pin(
    store: IStore, config: Config, number: str, length: int = 6,
    hasher: Callable[[str], object] = hash_password,
) -> str:
    """
    Give extension ``number`` a new generated PIN (voicemail, the API's user
    login), kept as a PBKDF2 hash.

    :param length: digits (at least the voicemail feature's ``pin_min_length``).
    :returns: the new PIN, to be shown once.
    :raises ResetError: when there is no such extension, or its PIN is in
        the config file.
    """
    extension = await store.get_extension(number)
    if extension is None:
        raise ResetError(f"no extension {number!r}")
    if any(e.number == number and (e.pin or e.pin_hash) for e in config.extensions):
        raise ResetError(f"{number}'s PIN is set in {config.path}: change it there")
    pin = generate_pin(number, length)
    encoded = await _maybe_deferred(hasher(pin))
    await store.put_extension(evolve(extension, pin_hash=str(encoded)))
    await store.add_audit(AuditEvent(time.time(), "secret.reset", number, "command line", "PIN"))
    return pin


async def _maybe_deferred(value: object) -> object:
    from twisted.internet.defer import Deferred

    if isinstance(value, Deferred):
        return await value
    return value
