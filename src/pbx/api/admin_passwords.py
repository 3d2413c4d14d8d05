"""
An administrator's own password: the policy a new one must meet and its
rotation (``security.password_min_length``, ``security.password_max_age_days``).

A password older than the maximum age still logs in, but the session it
opens can do one thing: change the password (``POST /api/v1/auth/password``)
or log out; every other request gets 403 until then (NIST SP 800-53 IA-5(1):
a lifetime restriction, enforced at the next use).  When a password was set
is kept in the store's settings (``admin.password_changed.<name>``); one
never seen before counts from the first login that looks.

A password written in the config file belongs to the file: the API does not
change it (409), and its age is not enforced, since the next start would put
the file's back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from attrs import frozen

from pbx.api.http import APIError
from pbx.records import AdminRecord
from pbx.security.passwords import password_problem

__all__ = ["AdminPasswords", "changed_key"]

_DAY = 86400.0


def changed_key(username: str) -> str:
    """The setting that holds when ``username``'s password was last set."""
    return f"admin.password_changed.{username}"


@frozen
class AdminPasswords:
    """
    Checks and changes administrators' passwords.

    :param store: where administrators and settings are kept.
    :param clock: the time now.
    :param min_length: fewest characters of a new password.
    :param max_age_days: days a password lasts (0: for ever).
    :param configured: administrators whose password the config file sets.
    :param verify: checks a password against its PBKDF2 encoding.
    :param hasher: makes the encoding of a new one.
    """

    store: Any
    clock: Any
    min_length: int
    max_age_days: int
    configured: frozenset[str]
    verify: Callable[[str, str], Awaitable[bool]]
    hasher: Callable[[str], Awaitable[str]]

    async def expired(self, username: str) -> bool:
        """Whether ``username``'s password is older than the maximum age."""
        if not self.max_age_days or username in self.configured:
            return False
        now = self.clock.seconds()
        raw = await self.store.get_setting(changed_key(username))
        if raw is None:
            await self.store.put_setting(changed_key(username), repr(now))
            return False
        try:
            changed = float(raw)
        except ValueError:
            changed = 0.0
        return now - changed > self.max_age_days * _DAY

    async def change(self, username: str, current: str, new: str) -> bool:
        """
        Give ``username`` the password ``new`` if ``current`` is its password now.

        :returns: False when ``current`` is wrong (nothing changed).
        :raises APIError: 409 for a password the config file sets, 404 for
            no such administrator, 422 for a new password the policy refuses.
        """
        if username in self.configured:
            raise APIError(409, "this password is set in the config file: change it there")
        admin = await self.store.get_admin(username)
        if admin is None:
            raise APIError(404, "no such administrator")
        if not await self.verify(current, admin.password_hash):
            return False
        problem = password_problem(new, username=username, min_length=self.min_length)
        if problem is None and new == current:
            problem = "the same as the current password"
        if problem is not None:
            raise APIError(422, f"new_password: {problem}")
        encoded = await self.hasher(new)
        await self.store.put_admin(AdminRecord(username, str(encoded)))
        await self.store.put_setting(changed_key(username), repr(self.clock.seconds()))
        return True
