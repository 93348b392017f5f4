"""Ghosts after a re-list, on the real API server (relist.py): an Offer deleted while the master's
watch was away (straight from etcd, with the kube-apiserver stopped) is never reported DELETED.
The restarted kube-apiserver's watch cache starts at etcd's current revision, so kopf's watch,
resuming from an older one, gets 410 Gone and lists the kind again; the re-list shows only what is
left. The master must find the Offer gone and offer its agent again."""

from __future__ import annotations

import base64
import json
import urllib.request

from mesoskube import API_GROUP, metrics
from tests.cluster.identity import wait_param_policies_resolve
from tests.cluster.mesos import RawFramework, task
from tests.helpers import eventually


def delete_from_etcd(port: int, key: str) -> int:
    """Delete one key through etcd's JSON gateway; the number of keys deleted."""
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v3/kv/deleterange", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(json.load(resp).get("deleted", 0))


def test_an_offer_deleted_while_the_watch_was_away_is_swept_and_its_agent_offered_again(
    kube, namespace, fake_nodes, own_master, local_cluster
):
    n1, n2 = fake_nodes(2, "cpu=2,memory=4Gi")
    m = own_master()
    swept = metrics.relist_ghosts.labels(kind="offers")
    before = swept._value.get()
    fw = RawFramework.subscribe(kube, namespace, "fw")
    offers = {o["spec"]["agent"]: o for o in fw.wait_offers(2)}
    ghost = offers[n1]["metadata"]["name"]
    port = local_cluster.state()["ports"]["etcd"]
    deleted: list[int] = []
    local_cluster.restart_component(
        "kube-apiserver",
        while_stopped=lambda: deleted.append(
            delete_from_etcd(port, f"/registry/{API_GROUP}/offers/{namespace}/{ghost}")
        ),
    )
    assert deleted == [1]
    wait_param_policies_resolve(kube, namespace)  # else the next tests' Frameworks are refused
    # The master learns of it only through its sweep: a new Offer on n1, the old one gone from its cache.
    again = eventually(
        lambda: [o for o in fw.offers() if o["spec"]["agent"] == n1 and o["metadata"]["name"] != ghost],
        timeout=60,
        what="n1 offered again after its Offer was deleted while the watch was away",
    )
    assert again and f"{namespace}/{ghost}" not in m.cache.offers
    # By the sweep: had the watch shown the deletion after all, this test would prove nothing.
    assert swept._value.get() == before + 1
    assert offers[n2]["metadata"]["name"] in {o["metadata"]["name"] for o in fw.offers()}


def test_a_pod_deleted_while_the_watch_was_away_ends_its_task_through_the_pods_reflector(
    kube, namespace, fake_nodes, own_master, local_cluster
):
    """Pods come through the master's own reflector (reflector.py), not kopf: after the restart its
    WATCH resumes from a version the new watch cache does not have (410), it LISTs again, and the
    listing replaces the cache: the task whose pod is gone ends REASON_POD_DELETED."""
    (n1,) = fake_nodes(1, "cpu=2,memory=4Gi")
    m = own_master()
    (pods,) = [r for r in m.reflectors if r.kind == "pods"]
    assert pods.lists == 1  # the start: one LIST of pods, the seed lists none
    fw = RawFramework.subscribe(kube, namespace, "fw")
    (offer,) = fw.wait_offers(1, agent=n1)
    fw.accept(offer, [task("t1", 1, 64)])
    fw.wait_task_state("t1", "TASK_RUNNING", timeout=60)
    port = local_cluster.state()["ports"]["etcd"]
    deleted: list[int] = []
    local_cluster.restart_component(
        "kube-apiserver",
        while_stopped=lambda: deleted.append(delete_from_etcd(port, f"/registry/pods/{namespace}/t1")),
    )
    assert deleted == [1]
    wait_param_policies_resolve(kube, namespace)
    ended = fw.wait_task_state("t1", "TASK_KILLED", timeout=60)
    assert ended["status"]["reason"] == "REASON_POD_DELETED"
    assert pods.lists == 2 and pods.ghosts == 1
