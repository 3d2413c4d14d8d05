"""
The recordings kept: their metadata in the store (``recording`` items, one
per recording, owner ``""``) and their audio in one directory.

A recording's item is written when it starts (``status: recording``,
naming its temporary file) and again when its file is complete
(``complete``), so that after a crash :meth:`Library.recover` finds the
recordings that were running, repairs what their temporary files hold and
marks them ``interrupted``.  :meth:`Library.sweep` deletes recordings older
than the retention period.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Any

from attrs import define

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pbx.features.recording.files import (
    RECORDING_ID,
    read_file,
    remove_stale_parts,
    repair_part,
    unlink,
    wav_bytes,
)
from pbx.interfaces import IStore

__all__ = ["KIND", "Library"]

KIND = "recording"
"""The store's item kind for recording metadata."""
STATUSES = ("recording", "complete", "interrupted")


@define(eq=False)
class Library:
    """
    The recordings of one PBX.

    :param store: where metadata lives.
    :param directory: where audio lives.
    :param clock: the time source for ids and the sweep.
    :param in_thread: :meth:`pbx.interfaces.IPBX.run_in_thread`.
    """

    log = Logger()

    store: IStore
    directory: str
    clock: IReactorTime
    in_thread: Callable[..., Deferred[Any]]

    def new_id(self) -> str:
        """A fresh recording id (sortable by start time)."""
        return f"{int(self.clock.seconds() * 1000):013d}-{secrets.token_hex(4)}"

    def path(self, recording_id: str) -> str:
        """Where recording ``recording_id``'s audio is once complete."""
        return os.path.join(self.directory, f"{recording_id}.wav")

    async def prepare(self) -> None:
        """Make the directory (private: recordings are personal data)."""
        await self.in_thread(os.makedirs, self.directory, 0o700, True)

    async def put(self, meta: dict[str, Any]) -> None:
        """Store (or replace) a recording's metadata."""
        await self.store.put_item(KIND, "", meta["id"], meta)

    async def get(self, recording_id: str) -> dict[str, Any] | None:
        """A recording's metadata, or None."""
        if not RECORDING_ID.fullmatch(recording_id):
            return None
        return await self.store.get_item(KIND, "", recording_id)  # type: ignore[no-any-return]

    async def all(self, party: str | None = None) -> list[dict[str, Any]]:
        """Every recording (of calls ``party`` was in, when given), newest first."""
        items = await self.store.list_items(KIND, "", party)
        found = [data for _, _, data in items]
        if party is not None:
            found = [m for m in found if party in (m.get("caller"), m.get("callee"))]
        return sorted(found, key=lambda m: m["id"], reverse=True)

    async def audio(self, meta: dict[str, Any]) -> bytes | None:
        """The WAV bytes of a finished recording, or None."""
        if meta.get("status") == "recording":
            return None
        return await self.in_thread(read_file, self.path(meta["id"]))  # type: ignore[no-any-return]

    async def delete(self, meta: dict[str, Any]) -> None:
        """Remove a recording's audio, then its metadata."""
        await self.in_thread(unlink, self.path(meta["id"]))
        await self.store.delete_item(KIND, "", meta["id"])

    async def recover(self) -> int:
        """
        After a crash: every recording still marked ``recording`` keeps what
        its temporary file holds (repaired, placed under its final name, marked
        ``interrupted``), or is forgotten if nothing was written.

        :returns: how many were kept.
        """
        kept, started = 0, self.clock.seconds()
        recordings = await self.all()
        owned = {os.path.basename(str(m.get("part") or "")) for m in recordings}
        stale = await self.in_thread(
            remove_stale_parts, self.directory, started - 60, owned
        )
        if stale:
            self.log.info(
                "{stale} temporary recording file(s) nobody owns removed", stale=stale
            )
        for meta in recordings:
            if meta.get("status") != "recording":
                continue
            part = os.path.join(
                self.directory, os.path.basename(str(meta.get("part", "")))
            )
            try:
                audio = await self.in_thread(repair_part, part, self.path(meta["id"]))
            except (OSError, ValueError) as e:
                self.log.warn(
                    "recording {id}: nothing to recover ({e})", id=meta["id"], e=e
                )
                audio = 0
            if not audio:
                await self.store.delete_item(KIND, "", meta["id"])
                continue
            seconds = audio / 2 / meta.get("channels", 1) / meta.get("rate", 8000)
            meta.update(
                status="interrupted",
                duration=round(seconds, 3),
                part="",
                ended=meta["started"] + seconds,
            )
            await self.put(meta)
            kept += 1
        return kept

    async def sweep(self, retention_days: float) -> int:
        """Delete finished recordings that ended more than ``retention_days`` ago; how many."""
        if retention_days <= 0:
            return 0
        limit = self.clock.seconds() - retention_days * 86400
        gone = 0
        for meta in await self.all():
            if (
                meta.get("status") != "recording"
                and (meta.get("ended") or meta["started"]) < limit
            ):
                await self.delete(meta)
                gone += 1
        return gone

    async def finished(self, meta: dict[str, Any]) -> None:
        """A recording's file is complete: store its length and status."""
        size = await self.in_thread(wav_bytes, self.path(meta["id"]))
        meta.update(
            status="complete",
            part="",
            duration=round(size / 2 / meta["channels"] / meta["rate"], 3),
        )
        await self.put(meta)
