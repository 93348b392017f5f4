"""Run a master replica: leader election, the engine thread plus kopf's watch loop, the probes; in the
foreground or in a thread (tests)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

import kopf
from prometheus_client import start_http_server

from mesoskube import API_GROUP, API_VERSION, metrics
from mesoskube.kube import Kube
from mesoskube.master.cache import Cache
from mesoskube.master.election import LeaderElector
from mesoskube.master.engine import Engine
from mesoskube.master.handlers import register
from mesoskube.master.probes import HealthServer, Probe, liveness, readiness
from mesoskube.master.reflector import Reflector
from mesoskube.master.reflector import start as start_reflectors
from mesoskube.master.writer import KubeWriter
from mesoskube.settings import Settings

log = logging.getLogger("mesoskube.master")
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


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


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base: the master registers on-event handlers only (handlers.py), and kopf reads the
    diff-base only for on.create/update/resume handlers and daemons. Its default builds one anyway,
    a deep copy of every object on every event (a Node's whole status included): 16% of the
    master's CPU in a 2,000-task burst at 1,000 nodes (py-spy --gil). `register` refuses a
    handler that would need it."""

    def build(self, *, body: kopf.Body, extra_fields: object = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def kopf_settings(settings: Settings) -> kopf.OperatorSettings:
    ks = kopf.OperatorSettings()
    ks.posting.enabled = False  # our own Events say what happened; kopf's would say which handler ran
    ks.scanning.disabled = True  # resources are known; no CRD/namespace scanning (and no RBAC for it)
    ks.watching.server_timeout = 300
    ks.watching.client_timeout = 330
    ks.persistence.finalizer = "mesoskube.io/kopf"
    ks.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="mesoskube.io")
    ks.persistence.diffbase_storage = NoDiffBase()
    return ks


def lease_namespace(settings: Settings) -> str:
    if settings.leaseNamespace:
        return settings.leaseNamespace
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


OUR_RESOURCES = frozenset({"frameworks", "offers", "tasks", "mesosroles"})


def wait_for_resources(kube: Kube, stop: threading.Event, timeout: float = 5.0) -> None:
    """Until the API server answers and serves mesoskube.io/v1alpha1 with our resources."""
    delay, warned = 0.2, False
    while not stop.is_set():
        try:
            got = kube.custom.get_api_resources(API_GROUP, API_VERSION, _request_timeout=timeout)
            if got.resources and {r.name for r in got.resources} >= OUR_RESOURCES:
                return
            why = "the mesoskube.io CRDs are not served"
        except Exception as e:
            why = _short(e)
        if not warned:
            log.warning("waiting for the API server (%s)", why)
            warned = True
        stop.wait(delay)
        delay = min(delay * 2, 5.0)


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:160]}"


@dataclass
class Master:
    """One master replica. Without leader election it leads from the start. With it, the replica seeds
    its cache and keeps it warm through its reflectors and kopf's watches (reads only) until it
    holds the Lease; then the engine and status threads start writing. A leader that loses the Lease
    stops at once (`lost` is set; in the foreground the process exits 1 and is restarted, as
    kube-scheduler is)."""

    kube: Kube
    settings: Settings
    cache: Cache = field(default_factory=Cache)
    exit_on_lost: bool = False
    # Status patches and Events on their own client and rate limiter (writer.py); None: `kube`.
    status_kube: Kube | None = None
    status_off_step: bool = False  # Task status patches on their own pool (engine.py says why off)

    def __post_init__(self) -> None:
        self.engine = Engine(
            KubeWriter(self.kube, self.status_kube),
            self.settings,
            self.cache,
            status_off_step=self.status_off_step,
        )
        self.registry = kopf.OperatorRegistry()
        handlers = register(self.registry, self.cache, self.engine, lambda: connection_info(self.kube))
        # Nodes and pods through reflectors of our own (reflector.py), on a client of their own.
        source = KubeWriter(self.kube.sibling())
        settle = self.engine.ghosts.settle
        self.reflectors = [
            Reflector("nodes", source, handlers.reflected, settle),
            Reflector("pods", source, handlers.reflected, settle),
        ]
        self.engine.reflected = frozenset(r.kind for r in self.reflectors)  # the rest through kopf
        self._stop_flag: threading.Event = threading.Event()
        self._threads: list[threading.Thread] = []
        # The Mesos HTTP API (mesoskube.mesosapi), when httpPort is set: it serves on the leader; on a
        # standby it answers 307 to the leader the Lease names.
        self.http = None
        self.pods = None  # the in-process pods framework, when settings.podsFramework; leader only
        self._leader_services = threading.Event()  # set once http and pods were started (or failed)
        self._leader_services_error: BaseException | None = None
        self._leader_services_lock = threading.Lock()
        # One identity for the Lease and kopf. kopf's default asks the password database for the
        # user name; a container running as an arbitrary uid (the chart's 65532) has no entry there
        # and kopf crashes.
        self.identity = (
            self.settings.identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self.lost = threading.Event()
        self.elector: LeaderElector | None = None
        if self.settings.leaderElect:
            # The client's elector logs each try at INFO (every retryPeriod on a standby): keep its
            # failures only.
            logging.getLogger("leaderelection").setLevel(logging.INFO)
            logging.getLogger("leaderelection").addFilter(_ELECTION_FAILURES)
            self.elector = LeaderElector(
                self.kube,
                name=self.settings.leaseName,
                namespace=lease_namespace(self.settings),
                identity=self.identity,
                lease_duration=self.settings.leaseDuration,
                renew_deadline=self.settings.renewDeadline,
                retry_period=self.settings.retryPeriod,
                on_started=lambda: metrics.leader.set(1),
                on_lost=self._leadership_lost,
                annotations=self._advertised,
            )
        self._engine_thread: threading.Thread | None = None
        self._status_thread: threading.Thread | None = None
        self.health: HealthServer | None = None

    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.leading.is_set()

    def _advertised(self) -> dict[str, str]:
        """What the Lease holder writes on the Lease: where its Mesos HTTP API is reached."""
        from mesoskube.mesosapi.leader import lease_annotations

        http = self.http
        return lease_annotations(self.identity, http.address) if http is not None and http.address else {}

    def _start_http_standby(self) -> None:
        """With leader election every replica listens on httpPort: a standby answers 307 to the
        leader, as a non-leading Mesos master does, so a client behind the Service never meets a
        refused connection."""
        if not (self.settings.httpPort and self.elector is not None):
            return
        from mesoskube.mesosapi.server import MesosApiServer

        self.http = MesosApiServer(
            self.kube,
            self.settings,
            active=False,
            lease=(self.elector.name, self.elector.namespace),
            identity=self.identity,
        ).start_in_thread()

    def start_http(self) -> None:
        if not self.settings.httpPort:
            return
        if self.http is not None:  # the standby's listener: it serves from now on
            self.http.activate()
            return
        from mesoskube.mesosapi.server import MesosApiServer

        self.http = MesosApiServer(self.kube, self.settings).start_in_thread()

    async def operator(self, stop_flag: threading.Event | None = None) -> None:
        await kopf.operator(
            registry=self.registry,
            identity=self.identity,  # not kopf's default: see __post_init__
            settings=kopf_settings(self.settings),
            standalone=True,
            # Every namespace, even for a master confined to one (`namespace`): the pods on its
            # agents come from any namespace (DaemonSets, other masters' tasks), and a watch of its
            # own namespace alone left the others' as the start-up LIST saw them. Handlers ignores
            # the Frameworks, Offers and Tasks of other namespaces.
            clusterwide=True,
            liveness_endpoint=None,  # probes.py serves /healthz and /readyz on healthPort
            # A threading.Event stop flag is awaited in an executor thread that asyncio.run then joins
            # on exit.
            stop_flag=stop_flag,
        )

    def _engine_main(self) -> None:
        try:
            if not self._seed():
                return
            if self.elector is not None:
                # Only a synced replica stands for election: one that leads can allocate at once.
                t = threading.Thread(target=self.elector.run, name="mesoskube-election", daemon=True)
                t.start()
                self._threads.append(t)
                while not self.elector.leading.wait(0.05):
                    if self.engine.stopping.is_set():
                        return
                log.info("leading: the engine takes over")
                self.engine.take_over()  # the cache is warm; whatever the last leader left is looked at now
            if self.engine.stopping.is_set():
                return
            self._status_thread = threading.Thread(
                target=self.engine.run_status, name="mesoskube-status", daemon=True
            )
            self._status_thread.start()
            self._start_leader_services()
            self.engine.loop()
        except Exception:
            log.exception("the engine thread failed")
        finally:
            if not self.engine.stopping.is_set():  # the engine died under us: nobody may lead here
                log.error("the engine thread ended unexpectedly")
                self._leadership_lost()

    def start_pods_framework(self) -> None:
        """The pods framework (pods naming settings.schedulerName) in this process, if enabled."""
        if not self.settings.podsFramework:
            return
        from mesoskube.frameworks.pods import PodsFramework

        self.pods = PodsFramework(
            self.kube,
            scheduler_name=self.settings.schedulerName,
            namespace=self.settings.namespace,
            agent_selector=self.settings.agentSelector,
        ).start()

    def _start_leader_services(self) -> None:
        """The Mesos HTTP API and the pods framework write (subscriptions, Frameworks, bindings):
        they run on the leader only, started once it leads, and stop with it (a standby's HTTP API
        only redirects)."""
        try:
            with self._leader_services_lock:
                if self.engine.stopping.is_set():
                    return
                self.start_http()
                self.start_pods_framework()
        except Exception as e:
            self._leader_services_error = e
            raise
        finally:
            self._leader_services.set()

    def _stop_leader_services(self) -> None:
        with self._leader_services_lock:
            pods, http, self.pods, self.http = self.pods, self.http, None, None
        if pods is not None:
            pods.stop()
        if http is not None:
            http.stop()

    def _seed(self) -> bool:
        """The first LIST, retried until it succeeds: a master started while the API server is away
        (or not yet serving our CRDs) waits for it instead of running without an engine."""
        delay = 0.2
        for r in self.reflectors:  # their first LISTs fill nodes and pods; each retries its own
            while not r.synced.wait(0.05):
                if self.engine.stopping.is_set():
                    return False
        while not self.engine.stopping.is_set():
            try:
                wait_for_resources(self.kube, self.engine.stopping)
                self.engine.seed()
                return True
            except Exception as e:
                log.warning("seeding the cache failed (%s); retrying in %.1fs", _short(e), delay)
                self.engine.stopping.wait(delay)
                delay = min(delay * 2, 5.0)
        return False

    def start_engine(self) -> None:
        if self.settings.healthPort:
            self.health = HealthServer(self.settings.healthPort, self.liveness, self.readiness).start()
        if self.elector is None:
            metrics.leader.set(1)
        self._start_http_standby()
        self._threads += start_reflectors(self.reflectors)
        self._engine_thread = threading.Thread(target=self._engine_main, name="mesoskube-engine", daemon=True)
        self._engine_thread.start()

    def liveness(self) -> Probe:
        return liveness(
            time.monotonic(),
            leading=self.leading,
            engine_alive=self._engine_thread is not None and self._engine_thread.is_alive(),
            engine_heartbeat=self.engine.heartbeat,
            election_heartbeat=None if self.elector is None else self.elector.heartbeat,
            timeout=self.settings.livenessTimeout,
        )

    def readiness(self) -> Probe:
        return readiness(self.leading, self.engine.ready.is_set(), election=self.elector is not None)

    def _leadership_lost(self) -> None:
        metrics.leader.set(0)
        self.engine.stop()
        if self.elector is not None:
            self.elector.stop()
        self.lost.set()
        if self.exit_on_lost:
            # Writes still in flight must not outlive the Lease: no graceful anything.
            log.error("leadership lost: exiting")
            logging.shutdown()
            os._exit(1)
        self._stop_leader_services()

    def run(self) -> int:
        """Foreground: metrics and health servers, engine, kopf; until SIGTERM or SIGINT. Then the
        engine stops writing and the Lease is released at once, so a standby takes over within its
        retry period (kopf's own signal handling would first wind its watches down)."""
        self.exit_on_lost = True
        if self.settings.metricsPort:
            start_http_server(self.settings.metricsPort)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        # kopf resolves its resources once, at start: with the API server away or our CRDs not yet
        # served it would never watch them.
        wait_for_resources(self.kube, stop)
        if stop.is_set():
            return 0
        kopf_thread = self._start_kopf()
        self.start_engine()
        while not stop.wait(1.0):
            if not kopf_thread.is_alive():
                log.error("kopf's watch loop ended; stopping")
                self.stop()
                return 1
        log.info("stopping: engine first, then the Lease")
        self.stop()
        return 0

    def _start_kopf(self) -> threading.Thread:
        # Off the main thread kopf cannot install signal handlers and says so; here that is intended
        # (stop() ends it), so the warning would only alarm whoever reads the output.
        logging.getLogger("kopf._core.reactor.running").addFilter(_SIGNALS_IGNORED)
        t = threading.Thread(
            target=lambda: asyncio.run(self.operator(self._stop_flag)), name="mesoskube-kopf", daemon=True
        )
        t.start()
        self._threads.append(t)
        return t

    def start_in_thread(self, timeout: float = 30) -> Master:
        """Background (tests, benchmarks, demo): returns once the first LIST has seeded the cache."""
        wait_for_resources(self.kube, self._stop_flag)
        self.start_engine()
        self._start_kopf()
        if not self.engine.ready.wait(timeout):
            raise TimeoutError("master did not finish its first LIST")
        if self.elector is None:  # it leads at once: return with its HTTP API and pods framework up
            if not self._leader_services.wait(timeout):
                raise TimeoutError("the Mesos HTTP API or the pods framework did not start")
            if self._leader_services_error is not None:
                raise self._leader_services_error
        return self

    def stop(self, timeout: float = 15) -> None:
        """Stop writing first (the engine finishes its step and its writes), then give the Lease up."""
        self.engine.stop()
        self._stop_leader_services()
        if self.elector is not None:
            self.elector.stop()
        writers = [t for t in (self._engine_thread, self._status_thread) if t is not None]
        for t in writers:
            t.join(timeout)
        if self.elector is not None and not any(t.is_alive() for t in writers):
            self.elector.release()
        self.engine.pool.shutdown(wait=False)  # a standby that never led never ended the engine loop
        metrics.leader.set(0)
        self._stop_flag.set()
        for r in self.reflectors:
            r.stop()
        for t in self._threads:
            t.join(timeout)
        if self.health is not None:
            self.health.stop()


class _SignalsIgnoredFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("OS signals are ignored")


class _ElectionFailuresFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return str(record.msg).startswith(("Failed", "Error retrieving"))


_ELECTION_FAILURES = _ElectionFailuresFilter()
_SIGNALS_IGNORED = _SignalsIgnoredFilter()  # one instance: addFilter skips a filter already added
