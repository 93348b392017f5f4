"""Fake (kwok) node shapes: 'cpu=8,memory=32Gi,ephemeral-storage=100Gi,gpu=1,label:zone=a'."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
FAKE_NODE_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
AGENT_LABEL = "mesoskube.io/agent"

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([KMGTPE]i?|m)?$")
_RESOURCE_KEYS = {
    "cpu": "cpu",
    "memory": "memory",
    "ephemeral-storage": "ephemeral-storage",
    "gpu": "nvidia.com/gpu",
    "nvidia.com/gpu": "nvidia.com/gpu",
    "pods": "pods",
}


class ShapeError(ValueError):
    pass


@dataclass(frozen=True)
class NodeShape:
    capacity: dict[str, str] = field(
        default_factory=lambda: {"cpu": "8", "memory": "32Gi", "ephemeral-storage": "100Gi", "pods": "110"}
    )
    labels: dict[str, str] = field(default_factory=dict)


DEFAULT_SHAPE = NodeShape()


def parse_shape(text: str) -> NodeShape:
    """Parse one shape; keys not given keep the default shape's values."""
    capacity = dict(DEFAULT_SHAPE.capacity)
    labels: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ShapeError(f"node shape item {item!r}: expected KEY=VALUE (e.g. cpu=8 or label:zone=a)")
        if key.startswith("label:"):
            labels[key.removeprefix("label:")] = value
            continue
        if key not in _RESOURCE_KEYS:
            raise ShapeError(
                f"node shape key {key!r} is unknown: "
                "use cpu, memory, ephemeral-storage, gpu, pods or label:NAME"
            )
        if not _QUANTITY.match(value):
            raise ShapeError(f"node shape {key}={value!r}: not a Kubernetes quantity (e.g. 8, 500m, 32Gi)")
        capacity[_RESOURCE_KEYS[key]] = value
    return NodeShape(capacity=capacity, labels=labels)


def node_manifest(name: str, shape: NodeShape) -> dict:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        AGENT_LABEL: "true",
        **shape.labels,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                FAKE_NODE_ANNOTATION[0]: FAKE_NODE_ANNOTATION[1],
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": {"taints": [dict(FAKE_NODE_TAINT)]},
        "status": {"capacity": dict(shape.capacity), "allocatable": dict(shape.capacity)},
    }


def node_names(count: int, start: int = 0, prefix: str = "kwok-node") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(start, start + count)]


def assign_shapes(count: int, shapes: list[NodeShape]) -> list[NodeShape]:
    """Shapes are dealt round-robin so mixed clusters stay mixed at any size."""
    shapes = shapes or [DEFAULT_SHAPE]
    return [shapes[i % len(shapes)] for i in range(count)]
