"""The master's probes on `healthPort`: `/healthz` (liveness) and `/readyz` (readiness).

Liveness follows the loop that does this replica's work: the engine loop on the leader, the
election loop on a standby. A loop that stopped turning for `livenessTimeout` (a dead engine thread,
a failed seed, a hung step) fails the probe, so the kubelet restarts the replica; kopf's own
/healthz would stay green through all of that. Readiness: the leader, or a standby whose cache is
seeded (it can take over at once).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: dict

    def body(self) -> bytes:
        return json.dumps({"ok": self.ok, **self.detail}, sort_keys=True).encode()


def liveness(
    now: float,
    leading: bool,
    engine_alive: bool,
    engine_heartbeat: float,
    election_heartbeat: float | None,
    timeout: float,
) -> Probe:
    """Pure: whether the replica's working loop still turns. `election_heartbeat` None = no election."""
    if not engine_alive:
        return Probe(False, {"reason": "the engine thread is not running"})
    if leading or election_heartbeat is None:
        age = now - engine_heartbeat
        return Probe(age <= timeout, {"loop": "engine", "age": round(age, 3), "timeout": timeout})
    age = now - election_heartbeat
    return Probe(age <= timeout, {"loop": "election", "age": round(age, 3), "timeout": timeout})


def readiness(leading: bool, seeded: bool, election: bool) -> Probe:
    if leading or (not election and seeded):
        return Probe(True, {"role": "leader"})
    return Probe(seeded, {"role": "standby", "synced": seeded})


class HealthServer:
    def __init__(self, port: int, live: Callable[[], Probe], ready: Callable[[], Probe]) -> None:
        routes = {"/healthz": live, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                probe = routes.get(self.path.split("?", 1)[0])
                if probe is None:
                    self.send_error(404)
                    return
                result = probe()
                body = result.body()
                try:
                    self.send_response(200 if result.ok else 503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the prober's timeout expired first: it no longer waits for an answer

            def log_message(self, *_: object) -> None:  # probes every few seconds: not worth a log line
                return

        self.server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="mesoskube-health", daemon=True)

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
