"""The master's probes, pure: liveness follows the loop doing this replica's work, readiness is
"leader, or synced standby"; and the election settings refuse timings that would let two lead.
One loopback test of the probe server's handling of a prober that gave up."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from pydantic import ValidationError

from mesoskube.master.probes import HealthServer, Probe, liveness, readiness
from mesoskube.settings import Settings, load


def test_a_leader_is_alive_while_its_engine_loop_turns():
    assert liveness(100.0, True, True, engine_heartbeat=95.0, election_heartbeat=99.0, timeout=60).ok
    stalled = liveness(100.0, True, True, engine_heartbeat=30.0, election_heartbeat=99.9, timeout=60)
    assert not stalled.ok and stalled.detail["loop"] == "engine"


def test_a_dead_engine_thread_fails_liveness_at_once():
    """A seed() that raised used to leave kopf's /healthz green with no engine at all."""
    probe = liveness(100.0, True, False, engine_heartbeat=100.0, election_heartbeat=None, timeout=60)
    assert not probe.ok and "engine thread" in probe.detail["reason"]


def test_a_standby_is_alive_while_its_election_loop_turns_though_its_engine_waits():
    assert liveness(100.0, False, True, engine_heartbeat=0.0, election_heartbeat=99.5, timeout=60).ok
    assert not liveness(100.0, False, True, engine_heartbeat=0.0, election_heartbeat=10.0, timeout=60).ok


def test_without_election_the_engine_loop_decides():
    assert not liveness(100.0, False, True, engine_heartbeat=0.0, election_heartbeat=None, timeout=60).ok


def test_readiness_is_leader_or_synced_standby():
    assert readiness(leading=True, seeded=False, election=True).ok
    assert readiness(leading=False, seeded=True, election=True).ok
    assert not readiness(leading=False, seeded=False, election=True).ok
    assert readiness(leading=True, seeded=True, election=False).detail["role"] == "leader"


def test_election_timings_must_let_a_leader_give_up_before_a_standby_takes_over():
    with pytest.raises(ValidationError, match="leaseDuration"):
        Settings(leaseDuration=2, renewDeadline=2.0)
    with pytest.raises(ValidationError, match="retryPeriod"):
        Settings(renewDeadline=2.0, retryPeriod=2.0)
    s = load(
        environ={
            "MESOSKUBE_LEADER_ELECT": "true",
            "MESOSKUBE_LEASE_DURATION": "15",
            "MESOSKUBE_RENEW_DEADLINE": "10",
            "MESOSKUBE_RETRY_PERIOD": "2",
        }
    )
    assert s.leaderElect and (s.leaseDuration, s.renewDeadline, s.retryPeriod) == (15, 10.0, 2.0)


def test_a_prober_that_gave_up_before_the_answer_leaves_no_traceback(capfd):
    """A kubelet probe times out on a loaded node and resets the connection; the late answer must
    not print a BrokenPipe traceback into the master's log."""
    reset, answered = threading.Event(), threading.Event()

    def slow() -> Probe:
        reset.wait(10)
        answered.set()
        return Probe(True, {})

    server = HealthServer(0, slow, slow)
    server.server.daemon_threads = False  # so that server_close() joins the handler's thread
    server.start()
    try:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        s.close()
        reset.set()
        assert answered.wait(10)
    finally:
        server.stop()
    assert "Traceback" not in capfd.readouterr().err
