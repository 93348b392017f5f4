"""Real-node configuration renderers and the offline image format (pure: no processes, no host)."""

from __future__ import annotations

import io
import json
import tarfile
import tomllib
from pathlib import Path

import pytest

from mesoskube.cluster.hostchanges import _tables
from mesoskube.cluster.images import _layer, oci_archive
from mesoskube.cluster.realnodes import (
    CLUSTER_DNS_IP,
    RealNodeSpec,
    cni_config,
    containerd_config,
    dns_objects,
    kubelet_config,
)


def spec(index: int, cluster: str = "pytest") -> RealNodeSpec:
    return RealNodeSpec(
        cluster, index, Path(f"/state/{cluster}/real-{index}"), "192.0.2.2", 40000 + index, 41000
    )


def test_two_nodes_share_nothing_that_would_collide():
    a, b = spec(0), spec(1)
    for attr in ("name", "pod_cidr", "bridge", "socket", "cgroup_root", "network_name"):
        assert getattr(a, attr) != getattr(b, attr), attr
    assert a.pod_cidr == "10.244.0.0/24" and b.pod_cidr == "10.244.1.0/24"
    # Linux interface names are at most 15 characters.
    assert len(a.bridge) <= 15
    assert spec(0, "other").bridge != a.bridge


def test_containerd_config_is_valid_toml_with_the_fixes_these_machines_need():
    cfg = tomllib.loads(containerd_config(spec(0)))
    assert cfg["version"] == 2
    assert cfg["grpc"]["address"] == "/state/pytest/real-0/containerd.sock"
    assert cfg["root"].startswith("/state/pytest/real-0/") and cfg["state"].startswith(
        "/state/pytest/real-0/"
    )
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE here
    assert cri["netns_mounts_under_state_dir"] is True  # network namespaces stay below the node's dir
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["cni"]["conf_dir"] == "/state/pytest/real-0/cni/net.d"


def test_cni_config_keeps_ipam_state_in_the_nodes_own_directory():
    cfg = cni_config(spec(1))
    bridge = cfg["plugins"][0]
    assert bridge["bridge"] == spec(1).bridge
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]
    assert bridge["ipam"]["dataDir"] == "/state/pytest/real-1/cni/ipam"


def test_kubelet_api_is_authenticated_and_authorised_by_webhook():
    cfg = kubelet_config(spec(0), Path("/pki/ca.crt"))
    assert cfg["authentication"]["anonymous"]["enabled"] is False
    assert cfg["authentication"]["webhook"]["enabled"] is True
    assert cfg["authorization"]["mode"] == "Webhook"
    assert cfg["readOnlyPort"] == 0
    assert cfg["clusterDNS"] == [CLUSTER_DNS_IP]
    assert cfg["oomScoreAdj"] == 0 and cfg["failCgroupV1"] is False
    assert cfg["cgroupRoot"] == "/mesoskube-pytest-real-0"


def test_dns_service_points_at_coredns_on_the_host():
    service, slice_ = dns_objects("192.0.2.2", 5353)
    assert service["spec"]["clusterIP"] == CLUSTER_DNS_IP
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {5353}
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
    assert slice_["endpoints"][0]["addresses"] == ["192.0.2.2"]


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_oci_archive_names_the_image_and_is_reproducible():
    layer = _layer({"bin/x": (b"#!/bin/sh\n", 0o755)}, {"bin/y": "/bin/x"}, ("bin", "tmp"))
    config = {"Entrypoint": ["/bin/x"], "User": "65532:65532"}
    first = oci_archive("mesoskube.local/x:1", layer, config)
    assert first == oci_archive("mesoskube.local/x:1", layer, config)
    files = _members(first)
    index = json.loads(files["index.json"])
    (manifest_ref,) = index["manifests"]
    assert manifest_ref["annotations"]["io.containerd.image.name"] == "mesoskube.local/x:1"
    assert manifest_ref["platform"] == {"architecture": "amd64", "os": "linux"}
    manifest = json.loads(files["blobs/sha256/" + manifest_ref["digest"].split(":")[1]])
    image_config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert image_config["config"]["User"] == "65532:65532"
    assert image_config["os"] == "linux" and image_config["architecture"] == "amd64"


@pytest.mark.parametrize(
    ("dump", "tables"),
    [("", set()), ("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n*nat\nCOMMIT\n", {"filter", "nat"})],
)
def test_iptables_dump_tables(dump, tables):
    assert _tables(dump) == tables
