"""Install or update the CRDs generated from the models, and wait until the API server serves them."""

from __future__ import annotations

import time

from kubernetes.client.exceptions import ApiException

from mesoskube.api.crdgen import crd_objects
from mesoskube.kube import Kube


def install_crds(kube: Kube, timeout: float = 30) -> None:
    for crd in crd_objects():
        name = crd["metadata"]["name"]
        try:
            kube.apiext.create_custom_resource_definition(crd)
        except ApiException as e:
            if e.status != 409:
                raise
            current = kube.apiext.read_custom_resource_definition(name)
            crd["metadata"]["resourceVersion"] = current.metadata.resource_version
            kube.apiext.replace_custom_resource_definition(name, crd)
    deadline = time.monotonic() + timeout
    for crd in crd_objects():
        while True:
            got = kube.apiext.read_custom_resource_definition(crd["metadata"]["name"])
            if any(c.type == "Established" and c.status == "True" for c in got.status.conditions or []):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {crd['metadata']['name']} not Established after {timeout}s")
            time.sleep(0.1)
    # Established is not yet served: the watch cache of a new CRD answers 429 "storage is
    # (re)initializing" for a moment, which would make a master started right now log retries.
    for crd in crd_objects():
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        version = crd["spec"]["versions"][0]["name"]
        while True:
            try:
                kube.custom.list_cluster_custom_object(group, version, plural, limit=1)
                break
            except ApiException as e:
                if e.status != 429 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
