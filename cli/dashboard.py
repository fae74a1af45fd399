"""Reach a RayCluster's dashboard: a port-forward through the Kubernetes API, and its token.

The port-forward is the API's own (`pods/portforward`, what `kubectl port-forward` uses), made
with the `kubernetes` client, so no kubectl is needed. Each local connection gets its own
forwarding stream: the client's PortForward carries one connection per port per websocket.
The head pod is looked up behind the head Service at start, and again when a stream to it
cannot be opened (the pod was replaced), so new connections reach a recreated head.
"""

from __future__ import annotations

import base64
import contextlib
import select
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from cli.errors import CliError, Exit

DASHBOARD_PORT = 8265
TOKEN_KEY = "auth_token"


class _Conn(Protocol):
    def recv(self, n: int) -> bytes: ...

    def sendall(self, data: bytes) -> None: ...

    def fileno(self) -> int: ...

    def close(self) -> None: ...


Connect = Callable[[], _Conn]
"""Opens one stream to the remote port (a fresh port-forward socket)."""


def _pump(a: _Conn, b: _Conn, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes."""
    try:
        while not stop.is_set():
            ready, _, _ = select.select([a, b], [], [], 0.5)
            for src in ready:
                data = src.recv(65536)
                if not data:
                    return
                (b if src is a else a).sendall(data)
    except OSError:
        return
    finally:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()


class LocalRelay:
    """Listens on 127.0.0.1 (a free port) and relays each connection through `connect`."""

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._stop = threading.Event()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._server.settimeout(0.5)
        self.port: int = self._server.getsockname()[1]
        self.last_error: str | None = None
        """Why the last relayed connection could not be opened (e.g. RBAC on pods/portforward)."""
        self._thread = threading.Thread(target=self._serve, name="ray-platform relay", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """`http://127.0.0.1:<port>`, as JobSubmissionClient takes it."""
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                local, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            # Opened on the connection's own thread: a forward towards a vanished node can take
            # long to fail, and must not hold up the connections behind it.
            threading.Thread(target=self._relay, args=(local,), daemon=True).start()

    def _relay(self, local: socket.socket) -> None:
        try:
            remote = self._connect()
        except Exception as e:  # the client sees a closed connection; the cause is kept
            self.last_error = " ".join(str(e).split())[:200] or type(e).__name__
            local.close()
            return
        _pump(local, remote, self._stop)

    def close(self) -> None:
        """Stop listening and end every relayed connection."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._server.close()
        self._thread.join(timeout=2)


def _core_api(
    code: Exit = Exit.CLUSTER,
    instead: str = "set RAY_ADDRESS (and RAY_AUTH_TOKEN) to a dashboard you already forward",
) -> Any:
    from kubernetes import client, config

    try:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    except Exception:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except Exception:
            raise CliError(
                code,
                "no Kubernetes credentials (KUBECONFIG or ~/.kube/config) to reach the cluster; "
                f"or {instead}",
            ) from None
    return client.CoreV1Api()


def _api_error(e: Exception, what: str, code: Exit) -> CliError:
    status = getattr(e, "status", None)
    reason = getattr(e, "reason", None) or " ".join(str(e).split())[:160]
    return CliError(code, f"cannot {what}: {f'HTTP {status} ' if status else ''}{reason}")


def _head_pod(core: Any, namespace: str, cluster: str) -> tuple[str, int]:
    """(pod name, container port) behind `<cluster>-head-svc:8265`."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    svc_name = f"{cluster}-head-svc"
    try:
        svc = core.read_namespaced_service(svc_name, namespace)
        selector = ",".join(f"{k}={v}" for k, v in sorted((svc.spec.selector or {}).items()))
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    except (ApiException, HTTPError) as e:
        raise _api_error(e, f"read Service {namespace}/{svc_name}", Exit.CLUSTER) from None
    target: int | str = DASHBOARD_PORT
    for p in svc.spec.ports or []:
        if p.port == DASHBOARD_PORT:
            target = p.target_port if p.target_port is not None else DASHBOARD_PORT
    for pod in pods:
        if pod.status.phase != "Running" or pod.metadata.deletion_timestamp is not None:
            continue
        if isinstance(target, int) or str(target).isdigit():
            return pod.metadata.name, int(target)
        for c in pod.spec.containers:
            for cp in c.ports or []:
                if cp.name == target:
                    return pod.metadata.name, int(cp.container_port)
    raise CliError(
        Exit.CLUSTER,
        f"no running head pod behind Service {namespace}/{svc_name} "
        f"(check `kubectl -n {namespace} get pods`)",
    )


PROXY_THREAD = "Kubernetes port forward proxy"
"""The name the kubernetes client gives the thread of each forwarded port."""


@contextlib.contextmanager
def quiet_proxy_threads(relay: LocalRelay) -> Iterator[None]:
    """While forwarding, an exception ending the kubernetes client's proxy thread (the head pod
    deleted under a stream: SSLEOFError, a closed websocket) is kept as the relay's last error
    instead of a traceback on stderr: the command then ends with its own one line (exit 6)."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.thread is not None and args.thread.name.startswith(PROXY_THREAD):
            relay.last_error = " ".join(f"{args.exc_type.__name__}: {args.exc_value}".split())[:200]
            return
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


@contextlib.contextmanager
def port_forward(namespace: str, cluster: str) -> Iterator[str]:
    """Forward a local port to the head's dashboard; yields its address, closes on exit."""
    from kubernetes.stream import portforward

    core = _core_api()
    head = [_head_pod(core, namespace, cluster)]

    def open_stream(pod: str, port: int) -> _Conn:
        pf = portforward(
            core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port)
        )
        conn: _Conn = pf.socket(port)
        return conn

    def connect() -> _Conn:
        try:
            return open_stream(*head[0])
        except Exception:
            # KubeRay replaces a deleted head pod with one of another name: ask the Service
            # again, so that a follow that lost the old head reaches the new one.
            fresh = _head_pod(core, namespace, cluster)
            if fresh == head[0]:
                raise
            head[0] = fresh
            return open_stream(*fresh)

    relay = LocalRelay(connect)
    with quiet_proxy_threads(relay):
        yield from _forwarding(relay, namespace, head)


def _forwarding(relay: LocalRelay, namespace: str, head: list[tuple[str, int]]) -> Iterator[str]:
    try:
        yield relay.address
    except CliError as e:
        # "dashboard unreachable" alone hides the cause: say why the port-forward failed.
        if e.code == Exit.CLUSTER and relay.last_error:
            raise CliError(
                e.code,
                f"{e}; the port-forward to {namespace}/{head[0][0]} failed: {relay.last_error}",
            ) from None
        raise
    finally:
        relay.close()


def secret_values(
    namespace: str, name: str, keys: tuple[str, ...], what: str, code: Exit, instead: str
) -> list[str]:
    """`keys` of Secret `namespace/name`, decoded; `what` ("read the Ray token from Secret …")
    and `code` make the one-line error when the Secret cannot be read, `instead` what the user
    can do without a cluster ("set RAY_AUTH_TOKEN")."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    core = _core_api(code, instead)
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except (ApiException, HTTPError) as e:
        raise _api_error(e, what, code) from None
    data = secret.data or {}
    missing = [key for key in keys if not data.get(key)]
    if missing:
        raise CliError(code, f"Secret {namespace}/{name} has no key {missing[0]!r}")
    try:
        return [base64.b64decode(data[key]).decode().strip() for key in keys]
    except ValueError:  # not base64, or not UTF-8
        raise CliError(code, f"Secret {namespace}/{name} holds a value that is not text") from None


def cluster_token(namespace: str | None, cluster: str | None) -> str:
    """The Ray auth token from the Secret KubeRay reads it from (named like the RayCluster)."""
    if not namespace or not cluster:
        raise CliError(
            Exit.AUTH,
            "token auth is on but the outputs name no namespace/rayClusterName to read the "
            "token from; set RAY_AUTH_TOKEN",
        )
    what = f"read the Ray token from Secret {namespace}/{cluster} (or set RAY_AUTH_TOKEN)"
    (token,) = secret_values(
        namespace, cluster, (TOKEN_KEY,), what, Exit.AUTH, "set RAY_AUTH_TOKEN"
    )
    return token
