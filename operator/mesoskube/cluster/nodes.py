"""Add, remove and wait for fake (kwok) nodes on any API server."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from kubernetes.client.exceptions import ApiException

from mesoskube.cluster.nodeshapes import NodeShape, assign_shapes, node_manifest, node_names
from mesoskube.kube import Kube


def add_nodes(
    kube: Kube,
    count: int,
    shapes: list[NodeShape],
    start: int = 0,
    prefix: str = "kwok-node",
    workers: int = 16,
) -> list[str]:
    names = node_names(count, start, prefix)

    def create(pair: tuple[str, NodeShape]) -> None:
        name, shape = pair
        try:
            kube.core.create_node(node_manifest(name, shape))
        except ApiException as e:
            if e.status != 409:
                raise

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(create, zip(names, assign_shapes(count, shapes), strict=True)))
    return names


def remove_nodes(kube: Kube, names: list[str]) -> None:
    for name in names:
        try:
            kube.core.delete_node(name)
        except ApiException as e:
            if e.status != 404:
                raise


def ready_fake_nodes(kube: Kube, selector: str = "type=kwok") -> tuple[int, int]:
    """(ready, total) among fake nodes (or the nodes `selector` picks)."""
    nodes = kube.core.list_node(label_selector=selector).items
    ready = sum(1 for n in nodes if _is_ready(n))
    return ready, len(nodes)


def wait_nodes_ready(
    kube: Kube, expected: int | list[str], timeout: float = 120, selector: str = "type=kwok"
) -> None:
    """Until `expected` fake nodes (or nodes `selector` picks) are Ready: a count of any, or these names."""
    deadline = time.monotonic() + timeout
    while True:
        if isinstance(expected, int):
            ready, _ = ready_fake_nodes(kube, selector)
            missing = max(0, expected - ready)
        else:
            nodes = kube.core.list_node(label_selector=selector).items
            ready_names = {n.metadata.name for n in nodes if _is_ready(n)}
            missing = len(set(expected) - ready_names)
        if not missing:
            return
        if time.monotonic() > deadline:
            what = "fake node(s)" if selector == "type=kwok" else f"node(s) matching {selector}"
            raise TimeoutError(f"{missing} {what} not Ready after {timeout:.0f}s")
        time.sleep(0.2)


def _is_ready(node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
