"""Polling helpers for cluster tests (the API server is real, so state arrives asynchronously)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from mesoskube.kube import Kube

T = TypeVar("T")


def eventually(probe: Callable[[], T], timeout: float = 30, interval: float = 0.1, what: str = "") -> T:
    """Call `probe` until it returns a truthy value; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or probe}; last value: {last!r}"
            )
        time.sleep(interval)


def wait_torn_down(kube: Kube, namespace: str, timeout: float = 30) -> None:
    """The master finished the TEARDOWN: no Framework left and no pod still holding resources.
    (Tests wait for this so the master is not stopped with work pending.)"""

    def done() -> bool:
        pods = kube.core.list_namespaced_pod(namespace).items
        live = [p.metadata.name for p in pods if p.status.phase not in ("Succeeded", "Failed")]
        return not kube.list("frameworks", namespace) and not live

    eventually(done, timeout=timeout, what="framework torn down and its pods gone")


def scrape(endpoint: int | str) -> dict[str, float]:
    """The mesoskube_* samples of a metrics endpoint (a port on this machine, or host:port), by
    name with labels as exposed (`name{label="value"}`)."""
    where = f"127.0.0.1:{endpoint}" if isinstance(endpoint, int) else endpoint
    text = urllib.request.urlopen(f"http://{where}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("mesoskube_"):
                labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def offer_requests(verb: str) -> float:
    """Requests on offers this process's masters sent with `verb` (in-process masters only)."""
    from prometheus_client import REGISTRY

    labels = {"verb": verb, "resource": "offers"}
    return REGISTRY.get_sample_value("mesoskube_api_requests_total", labels) or 0.0
