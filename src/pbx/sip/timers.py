"""SIP timer values, RFC 3261 §17 and Table 4 (A.  Table of Timer Values)."""

#: Round-trip time estimate.
T1 = 0.5
#: Maximum retransmission interval for non-INVITE requests and INVITE responses.
T2 = 4.0
#: Maximum duration a message remains in the network.
T4 = 5.0

#: INVITE transaction timeout (client); also Timer F, H, J for UDP.
TIMER_B = 64 * T1
#: Wait time for response retransmissions (client INVITE, unreliable).
TIMER_D = 32.0
#: Non-INVITE transaction timeout (client).
TIMER_F = 64 * T1
#: Wait time for ACK receipt (server INVITE).
TIMER_H = 64 * T1
#: Wait time for ACK retransmissions (server INVITE, unreliable).
TIMER_I = T4
#: Wait time for non-INVITE request retransmissions (server, unreliable).
TIMER_J = 64 * T1
#: Wait time for response retransmissions (client non-INVITE, unreliable).
TIMER_K = T4
#: Wait time for accepted INVITE request retransmissions (RFC 6026 §8.7).
TIMER_L = 64 * T1
#: Wait time for retransmission of 2xx to INVITE (RFC 6026 §8.4).
TIMER_M = 64 * T1

#: RFC 3261 §17.2.1: send 100 Trying if the TU has not answered within this.
TRYING_DELAY = 0.2
