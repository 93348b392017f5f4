"""kopf's connection built from an in-cluster configuration: a fake token file and environment, no
cluster. The in-cluster loader stores "bearer <token>" (lower-case); kopf must get the bare token
with its scheme, and a rotated projected token once the client's refresh hook re-reads the file."""

from __future__ import annotations

import datetime

from kubernetes import client
from kubernetes.config.incluster_config import InClusterConfigLoader

from mesoskube.kube import CountingApiClient, Kube
from mesoskube.master.runner import connection_info


def in_cluster(tmp_path, token: str) -> tuple[Kube, InClusterConfigLoader]:
    (tmp_path / "token").write_text(token)
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    cfg = client.Configuration()
    loader = InClusterConfigLoader(
        token_filename=str(tmp_path / "token"),
        cert_filename=str(tmp_path / "ca.crt"),
        environ={"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
    )
    loader.load_and_set(cfg)
    return Kube(CountingApiClient(cfg)), loader


def test_in_cluster_token_reaches_kopf_without_its_lower_case_scheme(tmp_path):
    kube, _ = in_cluster(tmp_path, "tok-1")
    info = connection_info(kube)
    assert info.server == "https://10.96.0.1:443"
    assert info.token == "tok-1"
    assert info.scheme == "bearer"  # kopf sends "<scheme> <token>": "bearer tok-1", as the client does
    assert info.ca_path == str(tmp_path / "ca.crt")
    assert not info.insecure


def test_a_rotated_service_account_token_is_read_again_on_the_next_login(tmp_path):
    kube, loader = in_cluster(tmp_path, "tok-1")
    assert connection_info(kube).token == "tok-1"
    (tmp_path / "token").write_text("tok-2")
    loader.token_expires_at = datetime.datetime.now() - datetime.timedelta(seconds=1)  # the minute passed
    assert connection_info(kube).token == "tok-2"


def test_a_kubeconfig_token_keeps_working(tmp_path):
    cfg = client.Configuration(host="https://127.0.0.1:6443")
    cfg.api_key = {"BearerToken": "Bearer abc"}
    info = connection_info(Kube(CountingApiClient(cfg)))
    assert (info.scheme, info.token) == ("Bearer", "abc")
