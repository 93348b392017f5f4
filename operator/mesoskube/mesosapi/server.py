"""The master's Mesos HTTP endpoints (aiohttp, on its own thread and event loop).

`POST /api/v1/scheduler` and the read endpoints, each also under `/master/`, trailing slash or not.
Blocking Kubernetes calls run in the loop's thread pool; nothing here talks to the engine.

Every replica listens. One that does not lead (a standby, or a leader still starting) answers as a
non-leading Mesos master (src/master/http.cpp, `Master::Http::redirect`): 307 with a protocol-relative
`Location: //<leader>/<path?query>`, the leader being the address the election Lease's holder
advertises (`leader.py`); 503 "No leader elected" when none is known. /health, /version and
/metrics/snapshot are served by any master; /redirect sends to the leader's base URL (the leader's
too), and a path below /redirect/ is 404 (no redirect loops). Authentication (not authorisation)
comes before a standby's redirect, as libprocess authenticates a route before its handler runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from kubernetes.client.exceptions import ApiException

from mesoskube.kube import Kube
from mesoskube.mesosapi import protocol as p
from mesoskube.mesosapi import state as st
from mesoskube.mesosapi.auth import READ_RIGHT, Authorizer, call_right
from mesoskube.mesosapi.leader import advertised_address, leader_address
from mesoskube.mesosapi.session import Session, Stream
from mesoskube.settings import Settings

log = logging.getLogger("mesoskube.mesosapi")

SCHEDULER = "/api/v1/scheduler"
READ_ENDPOINTS = {
    "/state",
    "/state-summary",
    "/slaves",
    "/frameworks",
    "/tasks",
    "/metrics/snapshot",
    "/roles",
}
UI_DIR = Path(__file__).parent / "ui"
UI_FILES = {"index.html", "app.js", "style.css", "preact-htm.js"}
UI_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
OPEN_ENDPOINTS = {"/health", "/version"}  # no authentication, served by a standby too
REDIRECT = "/redirect"
USER = web.RequestKey("user", str)  # the authenticated caller


def normalize(path: str) -> str:
    path = "/" + path.strip("/")
    if path == "/master":
        return "/"
    return path.removeprefix("/master") if path.startswith("/master/") else path


class MesosApiServer:
    """`active`: this replica leads and serves the scheduler API; else it answers 307 to the leader
    (`lease` = (name, namespace) of the election Lease; `identity` this replica's in it)."""

    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        *,
        active: bool = True,
        lease: tuple[str, str] | None = None,
        identity: str = "",
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.namespace = settings.httpNamespace or settings.namespace or "default"
        self.sessions: dict[str, Session] = {}
        self.removed: set[str] = set()
        self.master_id = str(uuid.uuid4())
        self.started = time.time()
        self.auth = Authorizer(kube, self.namespace) if settings.httpAuth == "kubernetes" else None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = settings.httpPort
        self.active = active and not settings.httpLeader
        self.lease, self.identity = lease, identity
        self.address = ""  # host:port advertised for this replica (set once listening)
        self.scheme = "https" if settings.httpTlsCertFile else "http"
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle

    def start_in_thread(self, timeout: float = 15) -> MesosApiServer:
        self._thread = threading.Thread(target=self._run, name="mesoskube-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the Mesos HTTP API did not start")
        if self._error:
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        # Cancel a SUBSCRIBE handler when its client goes away: that is how a dropped stream is seen.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        try:
            tls = None
            if self.settings.httpTlsCertFile:
                tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                tls.load_cert_chain(self.settings.httpTlsCertFile, self.settings.httpTlsKeyFile)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.settings.httpHost, self.port, ssl_context=tls)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.address = advertised_address(self.settings, self.port)
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        log.info(
            "Mesos HTTP API (%s) on %s:%d, advertised as %s (namespace %s; %s)",
            self.scheme,
            self.settings.httpHost,
            self.port,
            self.address,
            self.namespace,
            "leading" if self.active else "standby: 307 to the leader",
        )
        self._ready.set()
        retry = asyncio.create_task(self._retry_loop())
        await self._stopping.wait()
        retry.cancel()
        for s in list(self.sessions.values()):
            if s.stream is not None:
                s.stream.close()
        await self._runner.cleanup()

    def activate(self) -> None:
        """This replica now leads: serve the scheduler and read endpoints instead of redirecting."""
        self.active = True
        log.info("Mesos HTTP API on %s now serves as the leader", self.address)

    def stop(self) -> None:
        if self.loop is not None and self._stopping is not None:
            self.loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for s in list(self.sessions.values()):
                s.retry_due(now)

    async def blocking(self, fn, *args):
        assert self.loop is not None
        return await self.loop.run_in_executor(None, fn, *args)

    # ------------------------------------------------------------------ routing

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = normalize(request.path)
        if path == "/health":
            return web.Response(status=200)
        if path == "/version":
            return web.json_response({"version": p.MESOS_VERSION, "build_user": "mesoskube", "git_sha": ""})
        if path == REDIRECT or path.startswith(REDIRECT + "/"):
            return await self.redirect(request, path)
        if not self.active:
            if path != "/" and not path.startswith("/ui/"):
                # As in Mesos, the endpoint's authentication comes before the redirect (the web UI's
                # static files have none); who may do what is the leader's to decide.
                denied = await self.authorize(request, None)
                if denied:
                    return denied
            if path == "/metrics/snapshot":  # libprocess serves metrics on every master
                return web.json_response(
                    {"master/elected": 0.0, "master/uptime_secs": round(time.time() - self.started, 3)}
                )
            return await self.redirect(request, path)
        if path == SCHEDULER:
            return await self.scheduler(request)
        if path == "/" or path.startswith("/ui/"):
            # The web UI: static files; its data comes from the read endpoints (their auth applies).
            name = "index.html" if path == "/" else path.removeprefix("/ui/")
            if name not in UI_FILES or request.method not in ("GET", "HEAD"):
                return _text(404, f"No endpoint {request.path}")
            return web.Response(body=(UI_DIR / name).read_bytes(), content_type=UI_TYPES[Path(name).suffix])
        if path in READ_ENDPOINTS:
            if request.method not in ("GET", "HEAD"):
                return _text(
                    405, f"Expecting one of {{ 'GET' }}, but received '{request.method}'", {"Allow": "GET"}
                )
            denied = await self.authorize(request, *READ_RIGHT)
            if denied:
                return denied
            return await self.read(path, request)
        return _text(404, f"No endpoint {request.path}")

    # ------------------------------------------------------------------ leader

    def find_leader(self) -> tuple[str | None, bool]:
        """(address of the leading replica's HTTP API, whether that is this replica)."""
        if self.settings.httpLeader:
            return self.settings.httpLeader, False
        if self.lease is None:
            return (self.address, True) if self.active else (None, False)
        name, namespace = self.lease
        try:
            lease = self.kube.coordination.read_namespaced_lease(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None, False
            raise
        holder = lease.spec.holder_identity if lease.spec is not None else None
        if holder and holder == self.identity:
            return self.address, True
        return leader_address(holder, lease.metadata.annotations), False

    async def redirect(self, request: web.Request, path: str) -> web.Response:
        if path.startswith(REDIRECT + "/"):
            return _text(404, "")  # Mesos: below /redirect/ would loop
        if self.active and self.lease is None and not self.settings.httpLeader:
            leader, mine = self.address, True
        else:
            try:
                leader, mine = await self.blocking(self.find_leader)
            except ApiException as e:
                return _text(503, f"the election Lease cannot be read: HTTP {e.status} {e.reason}")
        if leader is None:
            return _text(503, "No leader elected")
        base = f"//{leader}"
        if path == REDIRECT:
            return web.Response(status=307, headers={"Location": base})
        if mine:  # the Lease names us, but the leader services are not up yet
            return _text(503, "Master has not finished recovery")
        return web.Response(status=307, headers={"Location": base + request.path_qs})

    async def authorize(
        self, request: web.Request, verb: str | None, resource: str = "frameworks"
    ) -> web.Response | None:
        """None when the caller may go on; else the 401/403 answer. verb None: authenticate only."""
        if self.auth is None:
            return None
        try:
            v = await self.blocking(self.auth.check, request.headers.get("Authorization"), verb, resource)
        except ApiException as e:
            return _text(503, f"Kubernetes authentication is unavailable: HTTP {e.status} {e.reason}")
        if v.status == 401:
            return _text(401, v.message, {"WWW-Authenticate": 'Bearer realm="mesoskube"'})
        if v.status == 403:
            return _text(403, v.message)
        request[USER] = v.user
        return None

    # ------------------------------------------------------------------ read endpoints

    def snapshot(self, host: str) -> st.Snapshot:
        ns = self.settings.namespace or None
        raw = self.kube.core.list_node(label_selector=self.settings.agentSelector, _preload_content=False)
        nodes = json.loads(raw.data)["items"]
        return st.Snapshot(
            nodes=nodes,
            frameworks=self.kube.list("frameworks", ns),
            offers=self.kube.list("offers", ns),
            tasks=self.kube.list("tasks", ns),
            host=host,
            port=self.port,
            master_id=self.master_id,
            start_time=self.started,
            port_range=self.settings.portRange,
            roles=self.kube.list("mesosroles"),
        )

    async def read(self, path: str, request: web.Request) -> web.Response:
        snap = await self.blocking(self.snapshot, request.url.host or "127.0.0.1")
        if path == "/state":
            body: Any = st.state(snap)
        elif path == "/state-summary":
            body = st.state_summary(snap)
        elif path == "/slaves":
            body = st.slaves(snap)
        elif path == "/frameworks":
            body = st.frameworks(snap)
        elif path == "/roles":
            body = st.roles(snap)
        elif path == "/metrics/snapshot":
            body = st.metrics_snapshot(snap, time.time() - self.started)
        else:
            try:
                body = st.tasks(snap, dict(request.query))
            except ValueError as e:
                return _text(400, str(e))
        return web.json_response(body, dumps=lambda o: json.dumps(o, separators=(",", ":")))

    # ------------------------------------------------------------------ scheduler API

    async def scheduler(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return _text(
                405, f"Expecting one of {{ 'POST' }}, but received '{request.method}'", {"Allow": "POST"}
            )
        # Who is calling comes first: an unauthenticated caller learns nothing about its call.
        denied = await self.authorize(request, None)
        if denied:
            return denied
        try:
            call = p.parse_call(request.headers.get("Content-Type"), await request.read())
        except p.CallError as e:
            return _text(e.status, e.message)
        denied = await self.authorize(request, *call_right(call["type"]))
        if denied:
            return denied
        if call["type"] == "SUBSCRIBE":
            return await self.subscribe(request, call)
        fid = p.value_of(call.get("framework_id")) or ""
        session = self.sessions.get(fid)
        if session is None or session.removed:
            return _text(400, "Framework cannot be found")
        if self.auth is not None and request.get(USER) != session.principal:
            return _text(
                400,
                f"Authenticated principal '{request.get('user')}' does not match principal "
                f"'{session.principal}' set in `FrameworkInfo`",
            )
        stream = session.stream
        if stream is None:
            return _text(403, "Framework is not subscribed")
        sid = request.headers.get("Mesos-Stream-Id")
        if not sid:
            return _text(400, "All non-subscribe calls should include the 'Mesos-Stream-Id' header")
        if sid != stream.id:
            return _text(
                400,
                f"The stream ID '{sid}' included in this request didn't match the stream ID "
                f"currently associated with framework ID {fid}",
            )
        try:
            status = await self.blocking(session.call, call)
        except p.CallError as e:
            return _text(e.status, e.message)
        except ApiException as e:
            return _text(503, f"the Kubernetes API refused the call: HTTP {e.status} {e.reason}")
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            # A field of the wrong JSON type (protobuf parsing would have refused it).
            return _text(400, f"Failed to convert JSON into Call protobuf: {type(e).__name__}: {e}")
        if call["type"] == "TEARDOWN":
            self.removed.add(fid)
            self.sessions.pop(fid, None)
        return web.Response(status=status)

    def _session_for(self, info: dict[str, Any], host: str, user: str) -> tuple[Session | None, str]:
        """The framework a SUBSCRIBE is for (new, re-subscribing, or failing over), or why it may not."""
        fid = p.value_of(info.get("id"))
        if fid:
            if fid in self.removed:
                return None, "Framework has been removed"
            try:
                obj = self.kube.get("frameworks", self.namespace, fid)
            except ApiException as e:
                if e.status != 404:
                    raise
                obj = None
            if obj is not None and (obj.get("status") or {}).get("phase") == "TornDown":
                self.removed.add(fid)
                return None, "Framework has been removed"
            if obj is None and fid in self.sessions:
                self.removed.add(fid)
                self.sessions.pop(fid, None)
                return None, "Framework has been removed"
            session = self.sessions.get(fid)
            if session is not None:
                session.info = info
                return session, ""
            if not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", fid) or len(fid) > 63:
                return None, f"Framework {fid} is not known to this master"
            name = fid
        else:
            name = p.framework_name(str(info.get("name") or "framework"))
        session = Session(
            kube=self.kube,
            namespace=self.namespace,
            name=name,
            info=info,
            master_info=p.master_info(host, self.port, self.master_id),
            default_image=self.settings.httpDefaultImage,
            principal=user,
        )
        self.sessions[name] = session
        return session, ""

    async def subscribe(self, request: web.Request, call: dict[str, Any]) -> web.StreamResponse:
        accept = request.headers.get("Accept", "*/*")
        if _accepts(accept, p.APPLICATION_JSON):
            media = p.APPLICATION_JSON
        elif _accepts(accept, p.APPLICATION_PROTOBUF):
            media = p.APPLICATION_PROTOBUF
        else:
            return _text(
                406, f"Expecting 'Accept' to allow '{p.APPLICATION_PROTOBUF}' or '{p.APPLICATION_JSON}'"
            )
        if "Mesos-Stream-Id" in request.headers:
            return _text(400, "Subscribe calls should not include the 'Mesos-Stream-Id' header")
        assert self.loop is not None
        stream = Stream(self.loop, protobuf=media == p.APPLICATION_PROTOBUF)
        resp = web.StreamResponse(status=200, headers={"Content-Type": media, "Mesos-Stream-Id": stream.id})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        info = call["subscribe"]["framework_info"]
        problem = p.validate_roles(info)
        session = None
        if not problem:
            session, problem = await self.blocking(
                self._session_for, info, request.url.host or "127.0.0.1", request.get(USER, "")
            )
        if problem or session is None:
            await resp.write(p.record(p.error(problem), stream.protobuf))
            return resp
        old = session.attach(stream)
        if old is not None:
            old.close()
        try:
            if not session.running:
                try:
                    await self.blocking(session.start_driver)
                except Exception as e:
                    log.exception("framework %s: SUBSCRIBE failed", session.name)
                    stream.send(p.error(f"Failed to subscribe: {e}"))
                    stream.close()
            await self._pump(stream, resp)
        finally:
            # A cancelled handler must not await again: hand the blocking detach to the pool.
            self.loop.run_in_executor(None, session.detach, stream)
        return resp

    async def _pump(self, stream: Stream, resp: web.StreamResponse) -> None:
        while True:
            try:
                item = await asyncio.wait_for(stream.queue.get(), p.HEARTBEAT_INTERVAL_SECONDS)
            except TimeoutError:
                item = p.record(p.heartbeat(), stream.protobuf)
            if item is None:
                return
            await resp.write(item)


def _accepts(header: str, media: str) -> bool:
    for part in header.split(","):
        m = part.split(";")[0].strip().lower()
        if m in ("*/*", media, media.split("/")[0] + "/*"):
            return True
    return False


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=message, headers=headers)
