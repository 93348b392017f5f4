"""Which replica's Mesos HTTP API leads, for the others' 307 answers.

A Mesos master that is not the leader answers every master endpoint but /health (and libprocess's
/version and /metrics) with 307 Temporary Redirect to the leader it learnt from ZooKeeper. Here the
election Lease plays ZooKeeper: its holder writes, with each acquire and renewal, the address its
HTTP API is reached at (Mesos's --advertise_ip/--advertise_port) as an annotation, next to its own
identity, so a standby never names an address that another holder left behind.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from mesoskube.settings import Settings

ADDRESS_ANNOTATION = "mesoskube.io/mesos-http-address"
HOLDER_ANNOTATION = "mesoskube.io/mesos-http-holder"
ANNOTATIONS = (ADDRESS_ANNOTATION, HOLDER_ANNOTATION)


def advertised_address(settings: Settings, port: int) -> str:
    """host:port other replicas name in their 307 answers for this one."""
    if settings.httpAdvertiseAddress:
        return settings.httpAdvertiseAddress
    host = os.environ.get("POD_IP") or settings.httpHost
    if host in ("", "0.0.0.0", "::"):
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:  # a host name that does not resolve: name it as it is (Mesos uses its hostname)
            host = socket.gethostname()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def lease_annotations(identity: str, address: str) -> dict[str, str]:
    return {ADDRESS_ANNOTATION: address, HOLDER_ANNOTATION: identity}


def annotate(
    annotations: dict[str, str] | None, holder: str | None, identity: str, ours: dict[str, str]
) -> dict[str, str]:
    """A Lease's annotations as `identity` writes it: its address while it holds the Lease, none
    once it gives it up (holder empty) or another holds it."""
    out = {k: v for k, v in (annotations or {}).items() if k not in ANNOTATIONS}
    if holder and holder == identity:
        out.update(ours)
    return out


def leader_address(holder: str | None, annotations: dict[str, Any] | None) -> str | None:
    """The address the Lease's holder advertises; None without a holder or when the annotation is
    another replica's (a holder that does not serve the HTTP API)."""
    annotations = annotations or {}
    if not holder or annotations.get(HOLDER_ANNOTATION) != holder:
        return None
    return annotations.get(ADDRESS_ANNOTATION) or None
