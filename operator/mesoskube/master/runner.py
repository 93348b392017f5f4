"""Run the master: the engine thread plus kopf's watch loop, in the foreground or in a thread (tests)."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field

import kopf
from prometheus_client import start_http_server

from mesoskube.kube import Kube
from mesoskube.master.cache import Cache
from mesoskube.master.engine import Engine
from mesoskube.master.handlers import register
from mesoskube.settings import Settings

log = logging.getLogger("mesoskube.master")


def connection_info(kube: Kube) -> kopf.ConnectionInfo:
    """kopf talks to the same API server, with the same credentials, as our client layer.

    Read the way kopf's own `login_via_client` reads the kubernetes client's configuration (the
    header's scheme and token split as in RFC 7235: the in-cluster loader stores "bearer <token>",
    lower-case), but from our Configuration, so `--kubeconfig` is honoured. Called on every login:
    kopf logs in again after a 401, and `get_api_key_with_prefix` runs the client's refresh hook,
    which re-reads a rotated projected ServiceAccount token.
    """
    cfg = kube.api.configuration
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1]) if parts else (None, None)
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme,
        token=token,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


def kopf_settings(settings: Settings) -> kopf.OperatorSettings:
    ks = kopf.OperatorSettings()
    ks.posting.enabled = False  # our own Events say what happened; kopf's would say which handler ran
    ks.scanning.disabled = True  # resources are known; no CRD/namespace scanning (and no RBAC for it)
    ks.watching.server_timeout = 300
    ks.watching.client_timeout = 330
    ks.persistence.finalizer = "mesoskube.io/kopf"
    ks.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="mesoskube.io")
    ks.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="mesoskube.io")
    return ks


@dataclass
class Master:
    kube: Kube
    settings: Settings
    cache: Cache = field(default_factory=Cache)

    def __post_init__(self) -> None:
        self.engine = Engine(self.kube, self.settings, self.cache)
        self.registry = kopf.OperatorRegistry()
        register(self.registry, self.cache, self.engine, lambda: connection_info(self.kube))
        self._stop_flag: threading.Event = threading.Event()
        self._threads: list[threading.Thread] = []

    async def operator(self, stop_flag: threading.Event | None = None) -> None:
        await kopf.operator(
            registry=self.registry,
            settings=kopf_settings(self.settings),
            standalone=True,
            clusterwide=not self.settings.namespace,
            namespaces=[self.settings.namespace] if self.settings.namespace else [],
            liveness_endpoint=f"http://0.0.0.0:{self.settings.healthPort}/healthz"
            if self.settings.healthPort
            else None,
            # A threading.Event stop flag is awaited in an executor thread that asyncio.run then joins
            # on exit; in the foreground kopf's own SIGTERM/SIGINT handling is the stop signal instead.
            stop_flag=stop_flag,
        )

    def start_engine(self) -> None:
        for target, name in (
            (self.engine.run, "mesoskube-engine"),
            (self.engine.run_status, "mesoskube-status"),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def run(self) -> None:
        """Foreground: metrics server, engine thread, kopf in this thread's event loop."""
        if self.settings.metricsPort:
            start_http_server(self.settings.metricsPort)
        self.start_engine()
        try:
            asyncio.run(self.operator())
        finally:
            self._stop_flag.set()
            self.engine.stop()

    def start_in_thread(self, timeout: float = 30) -> Master:
        """Background (tests, benchmarks, demo): returns once the first LIST has seeded the cache."""
        # Off the main thread kopf cannot install signal handlers and says so; here that is intended
        # (stop() ends it), so the warning would only alarm whoever reads the demo's output.
        logging.getLogger("kopf._core.reactor.running").addFilter(_SIGNALS_IGNORED)
        self.start_engine()
        t = threading.Thread(
            target=lambda: asyncio.run(self.operator(self._stop_flag)), name="mesoskube-kopf", daemon=True
        )
        t.start()
        self._threads.append(t)
        if not self.engine.ready.wait(timeout):
            raise TimeoutError("master did not finish its first LIST")
        return self

    def stop(self, timeout: float = 15) -> None:
        self.engine.stop()
        self._stop_flag.set()
        for t in self._threads:
            t.join(timeout)


class _SignalsIgnoredFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("OS signals are ignored")


_SIGNALS_IGNORED = _SignalsIgnoredFilter()  # one instance: addFilter skips a filter already added
