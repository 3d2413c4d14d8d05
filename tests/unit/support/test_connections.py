"""
Tests for the connection-flood harness's reading of /proc/net/tcp: the
integration tests wait on the daemon's accept queue, so a parser that
always said "empty" would let them measure before the daemon had worked.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from support.connections import accept_queue

TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:13C4 00000000:0000 0A 00000000:00000032 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0
   1: 0100007F:13C5 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2 1 0 100 0 0 10 0
   2: 0100007F:13C6 0100007F:9C40 01 00000000:00000010 00:00000000 00000000  1000        0 3 1 0 20 4 30 10 -1
"""


class AcceptQueueTests(SynchronousTestCase):
    """The listening socket's rx_queue is the number of connections waiting for accept."""

    def test_waiting(self) -> None:
        """A listener (state 0A) on the port reports its queue length."""
        self.assertEqual(accept_queue(0x13C4, TABLE), 0x32)
        self.assertEqual(accept_queue(0x13C5, TABLE), 0)

    def test_not_listening(self) -> None:
        """A port with only an established connection, or nothing, is not listening."""
        self.assertIsNone(accept_queue(0x13C6, TABLE))
        self.assertIsNone(accept_queue(5070, TABLE))
