"""`ray-platform submit` losing the Ray head while it follows a job.

A fake dashboard on loopback (aiohttp, the API as Ray 2.60's JobSubmissionClient uses it)
accepts the submit, starts the log stream, then loses the head the ways a cluster does: the
connection cut (head pod deleted), the head answering again without the job (a new head,
no job table), or nothing answering at all (a node gone, a half-open connection). The limits
are made short through the environment, so each case ends within seconds.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cli import dashboard
from cli.errors import Exit
from tests.cli.conftest import Result, Submit, write_outputs

JOB = "raysubmit_lostHead"
LINE1 = "epoch 1 done\n"
LINE2 = "epoch 2 done\n"
DASHBOARD_TIMEOUT = 1.0
RECONNECT = 2.0
WITHIN = RECONNECT + 3 * DASHBOARD_TIMEOUT + 1.0 + 3.0
"""cli/follow.py's bound (a retry's pause included), plus slack for a loaded CI box."""


class FakeDashboard:
    """`mode` is what happens once the log stream has sent its first line:

    cut      the connection is cut (no close frame), and the head answering afterwards does
             not know the job (a new head pod, its job table empty)
    blip     the connection is cut, the same head still runs the job: a new stream replays the
             log from the start, then the job SUCCEEDS
    silent   nothing answers any more: no status, no stream (a half-open connection)
    pending  the job stays PENDING, then status requests go unanswered
    quiet    like Ray's own stream (which never reads its socket, so answers no ping): quiet
             for longer than the client's limits while the status answers RUNNING, then the
             next line and the job SUCCEEDS
    chatty   a line every 20 ms until the server closes
    busy     lines keep coming while status requests go unanswered (GCS busy), then the job
             SUCCEEDS
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.known = True
        self.silent = False
        self.status = "PENDING" if mode == "pending" else "RUNNING"
        self.tails = 0
        self.lost_at: float | None = None
        """When the head went silent or was cut (time.monotonic)."""
        self._loop = asyncio.new_event_loop()
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_get("/api/version", self._version)
        app.router.add_get("/api/packages/{protocol}/{name}", self._package)
        app.router.add_post("/api/jobs/", self._submit)
        app.router.add_get("/api/jobs/{job}", self._job)
        app.router.add_get("/api/jobs/{job}/logs", self._logs)
        app.router.add_get("/api/jobs/{job}/logs/tail", self._tail)
        self._runner = web.AppRunner(app, handle_signals=False)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            assert self._release is not None and self._runner is not None
            self._release.set()  # hanging handlers return
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _hang(self) -> None:
        assert self._release is not None
        await self._release.wait()

    async def _version(self, _: web.Request) -> web.Response:
        import ray

        return web.json_response({"version": "4", "ray_version": ray.__version__})

    async def _package(self, _: web.Request) -> web.Response:
        return web.Response(status=200)  # "already uploaded": the test ships nothing

    async def _submit(self, _: web.Request) -> web.Response:
        return web.json_response({"job_id": JOB, "submission_id": JOB})

    async def _job(self, request: web.Request) -> web.Response:
        if self.silent:
            await self._hang()
        if not self.known:
            return web.Response(status=404, text=f"Job {request.match_info['job']} does not exist")
        if self.mode == "pending":
            self.silent = True  # answers PENDING once, then nothing
            self.lost_at = time.monotonic()
        # What Ray's JobDetails needs, so that its own client could read it too.
        details = {"type": "SUBMISSION", "job_id": None, "submission_id": JOB}
        return web.json_response({**details, "status": self.status, "entrypoint": "python"})

    async def _logs(self, _: web.Request) -> web.Response:
        return web.json_response({"logs": LINE1 + LINE2})

    async def _tail(self, request: web.Request) -> web.StreamResponse:
        # No automatic pongs, as on Ray's stream: it never calls receive(), where aiohttp pongs.
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        self.tails += 1
        await ws.send_str(LINE1)
        if self.mode == "quiet":
            self.lost_at = time.monotonic()  # quiet, not lost: the follow must see the difference
            await asyncio.sleep(3 * DASHBOARD_TIMEOUT + 1)
            await ws.send_str(LINE2)
            self.status = "SUCCEEDED"
            await ws.close()
            return ws
        if self.mode == "busy":
            self.lost_at = time.monotonic()
            self.silent = True
            for _ in range(int((3 * DASHBOARD_TIMEOUT + 1) / 0.05)):
                await ws.send_str(LINE2)
                await asyncio.sleep(0.05)
            self.status, self.silent = "SUCCEEDED", False
            await ws.close()
            return ws
        if self.mode == "chatty":
            assert self._release is not None
            while not self._release.is_set():
                await ws.send_str(LINE2)
                await asyncio.sleep(0.02)
            return ws
        if self.mode == "blip" and self.tails > 1:
            await ws.send_str(LINE2)  # a new stream starts from the top of the log
            self.status = "SUCCEEDED"
            await ws.close()
            return ws
        await asyncio.sleep(0.2)
        self.lost_at = time.monotonic()
        if self.mode == "silent":
            self.silent = True
            await self._hang()
            return ws
        self.known = self.mode != "cut"
        assert request.transport is not None
        request.transport.abort()  # the head's end is gone: no close frame
        return ws


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeDashboard]:
    server = FakeDashboard(request.param)
    try:
        yield server
    finally:
        server.close()


def _follow(tmp_path: Path, run_submit: Submit, fake: FakeDashboard) -> tuple[Result, float]:
    """Submit against the fake and follow, on a thread so that a hang fails the test instead
    of stalling the run; with the seconds from losing the head to the command's end."""
    outputs = write_outputs(tmp_path / "o.json", bucketUri=None)
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text("print('hi')\n")
    env = {
        "RAY_ADDRESS": fake.address,
        "RAY_AUTH_TOKEN": "t",
        "RAY_PLATFORM_DASHBOARD_TIMEOUT": str(DASHBOARD_TIMEOUT),
        "RAY_PLATFORM_RECONNECT_TIMEOUT": str(RECONNECT),
    }
    argv = ["--outputs", str(outputs), "--working-dir", str(work), "--", "python", "train.py"]
    got: list[Result] = []
    worker = threading.Thread(target=lambda: got.append(run_submit(argv, env)), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "submit still following a head that is gone, after 60s"
    assert fake.lost_at is not None
    return got[0], time.monotonic() - fake.lost_at


def _following(r: Result) -> str:
    """stderr from the submit on (before it, Ray's own logger may report that its handler
    holds a stream an earlier test's capture closed: not this command's doing)."""
    return r.err[r.err.index(f"submitted {JOB}") :]


def _exit_6_in_time(tmp_path: Path, run_submit: Submit, fake: FakeDashboard) -> Result:
    r, took = _follow(tmp_path, run_submit, fake)
    assert r.code == Exit.CLUSTER, r.err
    assert "Traceback" not in _following(r), r.err
    assert took < WITHIN, f"{took:.1f}s from losing the head to the exit"
    return r


@pytest.mark.parametrize("fake", ["cut"], indirect=True)
def test_a_job_the_new_head_does_not_know_was_lost_with_the_head(
    tmp_path: Path, run_submit: Submit, fake: FakeDashboard
) -> None:
    r = _exit_6_in_time(tmp_path, run_submit, fake)
    assert r.out == LINE1
    assert r.error_lines == [
        f"ray-platform submit: job {JOB} was lost with the Ray head: the Ray head answering now "
        "does not know it (the head was replaced and keeps no job table across restarts); "
        "submit it again"
    ]
    assert "refused" not in r.err


@pytest.mark.parametrize("fake", ["silent", "pending"], indirect=True)
def test_a_head_that_stops_answering_ends_the_follow_within_the_deadline(
    tmp_path: Path, run_submit: Submit, fake: FakeDashboard
) -> None:
    """Half-open: the connection stays up and nothing comes back, neither pongs on the log
    stream nor answers to status requests. Without a heartbeat and timeouts, a hang."""
    r = _exit_6_in_time(tmp_path, run_submit, fake)
    assert r.out == ("" if fake.mode == "pending" else LINE1)
    [line] = r.error_lines
    assert line.startswith(
        f"ray-platform submit: lost contact with the Ray head while following job {JOB}: "
        f"no answer for {RECONNECT:.0f}s"
    ), line
    assert line.endswith("its fate is unknown (the head was restarted or is unreachable)")
    assert (
        f"check later, follow: RAY_AUTH_MODE=token RAY_AUTH_TOKEN=… ray job logs -f {JOB}" in r.err
    )


@pytest.mark.parametrize("fake", ["blip"], indirect=True)
def test_a_cut_stream_to_a_head_that_still_runs_the_job_is_resumed(
    tmp_path: Path, run_submit: Submit, fake: FakeDashboard
) -> None:
    """A new stream replays the log from its start: what was printed is not printed again."""
    r, _ = _follow(tmp_path, run_submit, fake)
    assert r.code == Exit.SUCCEEDED, r.err
    assert r.out == LINE1 + LINE2
    assert fake.tails == 2
    assert f"{JOB}: lost contact with the Ray head" in r.err
    assert f"{JOB}: in contact with the Ray head again" in r.err


@pytest.mark.parametrize("fake", ["quiet", "busy"], indirect=True)
def test_a_job_that_prints_nothing_for_a_while_is_followed_on_one_stream(
    tmp_path: Path, run_submit: Submit, fake: FakeDashboard
) -> None:
    """Ray's log stream answers no websocket ping: a heartbeat took every job quiet for a
    while for a lost head and opened a new stream (and said so) every 1.5 x the limit. And a
    stream still delivering lines is not cut because status requests are slow (busy)."""
    r, _ = _follow(tmp_path, run_submit, fake)
    assert r.code == Exit.SUCCEEDED, r.err
    assert r.out.startswith(LINE1 + LINE2) and set(r.out[len(LINE1) :].splitlines(True)) == {
        LINE2
    }, r.out
    assert fake.tails == 1, r.err
    assert "lost contact" not in r.err, r.err


@pytest.mark.parametrize("fake", ["chatty"], indirect=True)
@pytest.mark.usefixtures("terminal_ctrl_c")
def test_ctrl_c_while_a_line_is_written_ends_the_stream_at_once(
    fake: FakeDashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands anywhere, e.g. in the middle of writing a line: raised there, it unwound
    into a websocket close handshake that Ray never answers (for good, while lines kept
    coming). The first Ctrl-C now cancels the stream at its await."""
    from cli import follow

    limits = follow.Limits(5.0, RECONNECT)
    follower = follow.Follower(follow.client(fake.address, None, limits), JOB, {}, limits)
    lines: list[str] = []

    def emit(chunk: str) -> None:
        lines.append(chunk)
        if len(lines) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # its handler runs here, inside the stream

    monkeypatch.setattr(follower, "_emit", emit)
    # Should the stream not end, a second Ctrl-C after 15 s ends the test (as a failure).
    second = threading.Timer(15, lambda: os.kill(os.getpid(), signal.SIGINT))
    second.start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            follower._stream()
        took = time.monotonic() - start
    finally:
        second.cancel()
    # Cancelled at its await: well inside CLOSE_WITHIN, the bound a second Ctrl-C would get.
    assert took < follow.CLOSE_WITHIN, f"{took:.1f}s from Ctrl-C to the end of the stream"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.usefixtures("terminal_ctrl_c")
def test_ctrl_c_in_the_streams_last_step_is_still_a_ctrl_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stream ends in the very step the Ctrl-C lands in (here: contact lost): the follow
    must still detach, not reconnect and wait for a second Ctrl-C."""
    from cli import follow

    limits = follow.Limits(5.0, RECONNECT)
    follower = follow.Follower(None, JOB, {}, limits)  # no client: the stream is replaced

    async def tail() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # handled here, before the coroutine's end
        raise follow.ContactLost("the log stream was cut")

    monkeypatch.setattr(follower, "_tail", tail)
    with pytest.raises(KeyboardInterrupt):
        follower._stream()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("fake", ["quiet"], indirect=True)
def test_ctrl_c_while_submitting_says_the_job_may_have_been_accepted(
    tmp_path: Path, run_submit: Submit, fake: FakeDashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut mid-request, the submit may still have reached Ray: "before the job was submitted"
    would send the user to submit it a second time."""
    from cli import follow

    real = follow.client

    def client(*args: Any, **kwargs: Any) -> Any:
        bounded = real(*args, **kwargs)

        def submit_job(**_: Any) -> str:
            raise KeyboardInterrupt

        bounded.submit_job = submit_job
        return bounded

    monkeypatch.setattr(follow, "client", client)
    outputs = write_outputs(tmp_path / "o.json", bucketUri=None)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "train.py").write_text("print('hi')\n")
    argv = ["--outputs", str(outputs), "--working-dir", str(tmp_path / "work"), "--", "python"]
    r = run_submit(argv, {"RAY_ADDRESS": fake.address, "RAY_AUTH_TOKEN": "t"})
    assert r.code == Exit.DETACHED, r.err
    assert r.error_lines == [
        "ray-platform submit: interrupted while submitting: whether Ray accepted the job is "
        f"unknown; `ray job list --address {fake.address}` shows it"
    ]


class _Obj:
    def __init__(self, **kw: object) -> None:
        self.__dict__.update(kw)


def _head(name: str) -> _Obj:
    return _Obj(
        metadata=_Obj(name=name, deletion_timestamp=None),
        status=_Obj(phase="Running"),
        spec=_Obj(containers=[]),
    )


def _web(body: str) -> http.server.ThreadingHTTPServer:
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_port_forward_reaches_a_replaced_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """KubeRay recreates a deleted head pod under a new name: once the old pod cannot be
    forwarded to, new connections go to the pod now behind the head Service."""
    heads = {"ray-head-old": _web("old head"), "ray-head-new": _web("new head")}
    pods = [_head("ray-head-old")]
    gone: set[str] = set()

    class Core:
        def read_namespaced_service(self, name: str, namespace: str) -> _Obj:
            port = _Obj(port=8265, target_port=8265)
            return _Obj(spec=_Obj(selector={"ray.io/node-type": "head"}, ports=[port]))

        def list_namespaced_pod(self, namespace: str, label_selector: str) -> _Obj:
            return _Obj(items=list(pods))

        def connect_get_namespaced_pod_portforward(self) -> None:
            raise AssertionError("only handed to portforward")

    def portforward(_: Any, pod: str, namespace: str, ports: str) -> _Obj:
        if pod in gone:
            raise RuntimeError(f'pods "{pod}" not found')
        where = ("127.0.0.1", heads[pod].server_address[1])
        return _Obj(socket=lambda port: socket.create_connection(where))

    monkeypatch.setattr(dashboard, "_core_api", lambda: Core())
    monkeypatch.setattr("kubernetes.stream.portforward", portforward)
    try:
        with dashboard.port_forward("ray", "ray") as address:

            def get() -> str:
                with urllib.request.urlopen(f"{address}/api/version", timeout=5) as r:
                    return str(r.read().decode())

            assert get() == "old head"
            gone.add("ray-head-old")
            pods[:] = [_head("ray-head-new")]
            assert get() == "new head"
    finally:
        for server in heads.values():
            server.shutdown()


def test_contact_errors_cover_what_requests_and_aiohttp_raise() -> None:
    """Neither library's connection errors are the builtin ConnectionError."""
    import requests

    from cli import follow

    caught = follow.contact_errors()
    for e in (
        requests.exceptions.ConnectionError("refused"),
        requests.exceptions.ReadTimeout("read timed out"),
        aiohttp.ClientConnectionError("cut"),
        aiohttp.ServerTimeoutError("no pong"),
        TimeoutError("timed out"),
    ):
        assert isinstance(e, caught), type(e)
    assert not issubclass(requests.exceptions.ConnectionError, ConnectionError)
    assert not issubclass(aiohttp.ClientError, ConnectionError)
