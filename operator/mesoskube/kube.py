"""The small client layer: the only module that builds Kubernetes API clients.

Handlers and tools get typed API objects from here; nothing else reads kubeconfigs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

from kubernetes import client, config

from mesoskube import API_GROUP, API_VERSION


def api_client(kubeconfig: str | None = None, pool: int = 32) -> client.ApiClient:
    """An ApiClient from a kubeconfig path, $KUBECONFIG, or the in-cluster service account."""
    cfg = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_kube_config(config_file=path, client_configuration=cfg)
    else:
        config.load_incluster_config(client_configuration=cfg)
    # The default pool of 4 connections serialises a busy master; one per worker thread instead.
    cfg.connection_pool_maxsize = pool
    return client.ApiClient(cfg)


@dataclass
class Kube:
    """Typed API groups over one ApiClient."""

    api: client.ApiClient

    @classmethod
    def connect(cls, kubeconfig: str | None = None) -> Kube:
        return cls(api_client(kubeconfig))

    @cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @cached_property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @cached_property
    def coordination(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api)

    @cached_property
    def apiext(self) -> client.ApiextensionsV1Api:
        return client.ApiextensionsV1Api(self.api)

    @cached_property
    def rbac(self) -> client.RbacAuthorizationV1Api:
        return client.RbacAuthorizationV1Api(self.api)

    # Custom resources of our group, by plural.
    def create(self, plural: str, namespace: str, body: dict) -> dict:
        return self.custom.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural, body)

    def get(self, plural: str, namespace: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural, name)

    def list(self, plural: str, namespace: str | None = None, **kw) -> list[dict]:
        if namespace:
            res = self.custom.list_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural, **kw)
        else:
            res = self.custom.list_cluster_custom_object(API_GROUP, API_VERSION, plural, **kw)
        return res["items"]

    def patch(self, plural: str, namespace: str, name: str, body: dict) -> dict:
        return self.custom.patch_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural, name, body)

    def patch_status(self, plural: str, namespace: str, name: str, body: dict) -> dict:
        return self.custom.patch_namespaced_custom_object_status(
            API_GROUP, API_VERSION, namespace, plural, name, body
        )

    def delete(self, plural: str, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural, name)
