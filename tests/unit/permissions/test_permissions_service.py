"""Tests for the permissions API in :class:`pbx.service.PBXService`: mounted at start, with the switch's guard."""

from __future__ import annotations

import json
import os

from treq.testing import StubTreq
from twisted.internet.defer import succeed
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from pbx import service as service_module
from pbx.api.http import make_site
from pbx.config import parse_config
from pbx.permissions.classes import ServiceClass
from pbx.security.passwords import hash_password
from pbx.service import PBXService
from pbx.testing import FakeUDPReactor, MemoryStore


class PermissionsServiceTests(SynchronousTestCase):
    """The running PBX serves ``/api/v1/permissions/`` and documents it."""

    def setUp(self) -> None:
        self.store = MemoryStore()
        self.patch(service_module, "open_store", lambda url, reactor: self.store)
        self.patch(service_module, "tune_garbage_collector", lambda: None)
        self.patch(service_module, "raise_descriptor_limit", lambda: (1024, 2048, 4096))
        self.patch(PBXService, "log", Logger(observer=lambda event: None))
        self.patch(
            PBXService,
            "hash_secret",
            lambda _, secret: succeed(hash_password(secret, iterations=1000)),
        )
        config = parse_config(
            f"state_dir: {os.path.abspath(self.mktemp())}\n"
            "sip: {listen: [udp:5060:interface=127.0.0.1]}\n"
            "permissions: {default: local}\n"
        )
        self.pbx = PBXService(config, FakeUDPReactor(), codecs={})
        self.pbx.startService()
        self.successResultOf(self.pbx.ready)
        self.addCleanup(lambda: self.successResultOf(self.pbx.stopService()))

    def test_mounted(self) -> None:
        """The routes answer (401 without a token, not 404) and are in the OpenAPI document."""
        assert self.pbx.sip is not None and self.pbx.sip.permissions is not None
        self.assertEqual(self.pbx.sip.permissions.config.default, ServiceClass.LOCAL)
        assert self.pbx.api is not None
        treq = StubTreq(make_site(self.pbx.api.resource(), 65536).resource)
        for path in ("/api/v1/permissions/", "/api/v1/permissions/alerts"):
            response = self.successResultOf(treq.get("http://127.0.0.1" + path))
            self.assertEqual(response.code, 401, path)
        response = self.successResultOf(
            treq.get("http://127.0.0.1/api/v1/openapi.json")
        )
        paths = json.loads(self.successResultOf(response.content()))["paths"]
        self.assertIn("/api/v1/permissions/holds/{number}", paths)
