"""Follow a submitted Ray job through the dashboard, with every wait bounded.

Ray's JobSubmissionClient sends its HTTP requests with no timeout and tails the logs over a
websocket nobody watches, so a head that vanishes without closing its connections (a node
gone, a half-open port-forward) would hang the command for good. Here every request has a
timeout, the job's status is asked beside the log stream, and losing contact opens a window to
regain it: the head may come back (KubeRay recreates a deleted head pod, and cli/dashboard.py
forwards new connections to whichever pod is then behind the head Service). Without GCS fault
tolerance a new head has an empty job table, so a job it does not know was lost with the old one.

Not a websocket heartbeat: Ray's log stream never reads its side of the socket (job_head.py
only sends; aiohttp answers a ping only inside receive()), so no ping is ever answered and a
heartbeat would take every job quiet for a while for a lost head.

The two limits, in seconds, from the environment (tests make them short):

  RAY_PLATFORM_DASHBOARD_TIMEOUT   each request's connect and read timeout, and how often the
                                   job's status is asked while its log streams; default 30
  RAY_PLATFORM_RECONNECT_TIMEOUT   how long to try regaining contact once it is lost, before
                                   giving up with exit 6; default 120

So a follow whose head went silent exits 6 within about RECONNECT + 3 x DASHBOARD + 1 seconds:
up to 2 x DASHBOARD to notice (the next status request, and its timeout), the window, and a
last try (a pause of RETRY_EVERY, one request) that began inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped]

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
RETRY_EVERY = 1.0
"""Seconds between tries while contact is lost (the port-forward reconnects meanwhile)."""
CLOSE_WITHIN = 3.0
"""Seconds a second Ctrl-C still gives the log stream to close, before a last cancel."""


@dataclass(frozen=True)
class Limits:
    dashboard: float = 30.0
    reconnect: float = 120.0

    @classmethod
    def from_env(cls) -> Limits:
        def seconds(var: str, default: float) -> float:
            raw = os.environ.get(var, "").strip()
            try:
                value = float(raw) if raw else default
            except ValueError:
                value = default
            return value if value > 0 else default

        return cls(
            seconds("RAY_PLATFORM_DASHBOARD_TIMEOUT", cls.dashboard),
            seconds("RAY_PLATFORM_RECONNECT_TIMEOUT", cls.reconnect),
        )


class ContactLost(Exception):
    """The dashboard stopped answering (or the log stream broke) while following a job."""


class JobLost(Exception):
    """Following gave up: `gone` when the (new) head does not know the job, else its fate is
    unknown because no head answered within the reconnect window."""

    def __init__(self, job_id: str, gone: bool, why: str) -> None:
        super().__init__(why)
        self.job_id = job_id
        self.gone = gone
        self.why = why


def contact_errors() -> tuple[type[BaseException], ...]:
    """What losing the dashboard raises: requests' errors are OSError but not the builtin
    ConnectionError, aiohttp's ClientError is neither, and a status request's or read timeout is a
    TimeoutError (an OSError too)."""
    import aiohttp

    return (OSError, aiohttp.ClientError, asyncio.TimeoutError, ContactLost)


def client(address: str, headers: dict[str, str] | None, limits: Limits) -> Any:
    """A JobSubmissionClient whose every request has a timeout. Ray's client takes none
    (SubmissionClient._do_request passes extra keywords on to requests.request, but no
    public method takes any), so the one method all its requests go through adds it."""
    from ray.job_submission import JobSubmissionClient

    class Bounded(JobSubmissionClient):
        def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", limits.dashboard)
            return super()._do_request(method, endpoint, **kwargs)

        def status_or_none(self, job_id: str) -> str | None:
            """The job's status, or None when the dashboard does not know the job (404)."""
            r = self._do_request("GET", f"/api/jobs/{job_id}")
            if r.status_code == 404:
                return None
            if r.status_code != 200:
                # A head still starting up may answer 5xx: not an answer about the job.
                raise ContactLost(f"HTTP {r.status_code} for the job's status")
            return str(r.json()["status"])

    return Bounded(address, headers=headers)


def _restore_sigint() -> None:
    """Python's own Ctrl-C handler back. signal.signal runs a pending handler first, so a
    Ctrl-C just then raises from this very call: put it back all the same, then raise."""
    pending: KeyboardInterrupt | None = None
    while True:
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            break
        except KeyboardInterrupt as e:
            pending = e
    if pending is not None:
        raise pending


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Follower:
    """Waits out PENDING, streams the logs, returns the final status; raises JobLost."""

    def __init__(self, client: Any, job_id: str, headers: dict[str, str], limits: Limits):
        self._client = client
        self._job_id = job_id
        self._headers = headers
        self._limits = limits
        self._printed = 0
        """Characters of the job's log written so far: a log stream opened again (or the
        whole log, once the job ended) starts from the beginning, so that many are skipped."""
        self._offset = 0
        self._bar: Any = None
        self._heard = 0.0
        """When the log stream last delivered a line (time.monotonic)."""

    def _emit(self, chunk: str) -> None:
        """Write what of `chunk` was not written yet (by an earlier stream of the same log)."""
        start = self._offset
        self._offset += len(chunk)
        if self._offset > self._printed:
            sys.stdout.write(chunk[max(0, self._printed - start) :])
            sys.stdout.flush()
            self._printed = self._offset

    def _rest(self, log: str) -> None:
        self._offset = 0
        self._emit(log)

    def run(self) -> str:
        try:
            return self._run()
        finally:
            # A Ctrl-C or JobLost while PENDING: the bar goes before the caller's last words
            # (closed later by the garbage collector, it was redrawn below them).
            self._end_pending()

    def _run(self) -> str:
        lost_at: float | None = None
        streamed_once = False
        while True:
            try:
                status: str | None = self._client.status_or_none(self._job_id)
                if status is None:
                    raise JobLost(
                        self._job_id,
                        True,
                        "the Ray head answering now does not know it",
                    )
                if lost_at is not None:
                    _say(f"{self._job_id}: in contact with the Ray head again ({status})")
                    lost_at = None
                if status == "PENDING":
                    self._pending()
                    continue
                self._end_pending()
                if status in TERMINAL:
                    self._rest(self._client.get_job_logs(self._job_id))
                    return status
                if not streamed_once:
                    _say(f"{self._job_id}: {status}; streaming its logs")
                    streamed_once = True
                self._stream()
                # The stream ends when the job does; its status turns terminal just after.
                time.sleep(0.3)
            except contact_errors() as e:
                self._end_pending()
                why = " ".join(str(e).split())[:160] or type(e).__name__
                now = time.monotonic()
                if lost_at is None:
                    lost_at = now
                    _say(
                        f"{self._job_id}: lost contact with the Ray head ({why}); trying again "
                        f"for up to {self._limits.reconnect:.0f}s"
                    )
                elif now - lost_at >= self._limits.reconnect:
                    raise JobLost(
                        self._job_id,
                        False,
                        f"no answer for {self._limits.reconnect:.0f}s (last: {why})",
                    ) from None
                time.sleep(RETRY_EVERY)

    def _pending(self) -> None:
        if self._bar is None:
            self._bar = tqdm(
                desc=f"{self._job_id}: setting up the runtime_env (downloading the working_dir)",
                bar_format="{desc} {elapsed}",
                file=sys.stderr,
                disable=None,
            )
        time.sleep(0.5)
        self._bar.refresh()

    def _end_pending(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _stream(self) -> None:
        """Tail the job's log until the dashboard closes the stream; ContactLost (or an
        aiohttp/OS error) when it breaks or the head stops answering. Ctrl-C: KeyboardInterrupt,
        once the stream is closed."""
        # A loop of its own, closed after: asyncio.run would leave the thread without a current
        # event loop, which breaks callers (and test runs) that expect one.
        loop = asyncio.new_event_loop()
        tail = loop.create_task(self._tail())
        interrupted = False

        def on_sigint(signum: int, frame: Any) -> None:
            # The first Ctrl-C cancels the stream at its `await`, where closing is quick (a
            # KeyboardInterrupt raised anywhere else unwound into a websocket close handshake
            # that Ray never answers); a second one, or one outside the stream, is Python's.
            nonlocal interrupted
            if interrupted or tail.done():
                raise KeyboardInterrupt
            interrupted = True
            loop.call_soon_threadsafe(tail.cancel)

        # Only where Ctrl-C means KeyboardInterrupt: not in another thread, nor in a process
        # started with SIGINT ignored (a shell's background job), which stays deaf to it.
        own = (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        )
        try:
            try:
                if own:
                    signal.signal(signal.SIGINT, on_sigint)
                loop.run_until_complete(tail)
            except KeyboardInterrupt:
                # A second Ctrl-C while closing (or one before the stream began): the stream
                # gets a bound, then a last cancel. A second Ctrl-C raised inside a step of the
                # stream may still leave its session to the garbage collector (a warning).
                for bound in (CLOSE_WITHIN, 0.5):
                    tail.cancel()  # on a finished task: marks its exception as seen
                    if tail.done():
                        break
                    with contextlib.suppress(Exception, KeyboardInterrupt):
                        loop.run_until_complete(asyncio.wait({tail}, timeout=bound))
                raise
            except (asyncio.CancelledError, Exception):
                # Our own cancel, or an end (ContactLost) in the step the Ctrl-C landed in.
                if not interrupted:
                    raise
            # A Ctrl-C in the stream's last step finds it ended (normally, or ContactLost):
            # still a Ctrl-C.
            if interrupted:
                raise KeyboardInterrupt
        finally:
            try:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
            finally:
                if own:
                    _restore_sigint()

    async def _tail(self) -> None:
        import aiohttp

        self._offset = 0
        job = f"{self._client.get_address()}/api/jobs/{self._job_id}"
        limit = self._limits.dashboard
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=limit, sock_read=limit)
        async with (
            aiohttp.ClientSession(headers=self._headers, timeout=timeout) as session,
            session.ws_connect(f"{job}/logs/tail") as ws,
        ):
            # The stream and a watch on the job's status: whichever ends first ends both (the
            # stream's end is the job's; the watch ends only in an error).
            read = asyncio.ensure_future(self._read(ws))
            watch = asyncio.ensure_future(self._watch(session, job, limit))
            try:
                done, _ = await asyncio.wait({read, watch}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                # Cancelled inside receive(), the websocket is marked closed (1006): leaving
                # the `async with` then waits for no close handshake, which Ray never answers.
                read.cancel()
                watch.cancel()
                await asyncio.gather(read, watch, return_exceptions=True)
            for task in (read, watch):
                if task in done:
                    task.result()  # the stream's end or error, else the watch's
                    return

    async def _read(self, ws: Any) -> None:
        import aiohttp

        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                self._heard = time.monotonic()
                self._emit(msg.data)
            elif msg.type == aiohttp.WSMsgType.ERROR:
                raise ContactLost(f"the log stream failed: {ws.exception()}")
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                # No close frame (the connection just ended) is 1006, ABNORMAL_CLOSURE.
                if ws.close_code in (None, aiohttp.WSCloseCode.ABNORMAL_CLOSURE):
                    raise ContactLost("the log stream was cut")
                return

    async def _watch(self, session: Any, job: str, every: float) -> None:
        """Ask the job's status every `every` seconds, each answer due within `every`: a head
        gone without a FIN (the stream then waits forever) ends in ContactLost or a timeout.
        A stream still delivering lines is contact enough: a slow or failed status request
        then (GCS busy, a dashboard restarting its job module) does not cut it."""
        import aiohttp

        while True:
            await asyncio.sleep(every)
            try:
                async with session.get(job, timeout=aiohttp.ClientTimeout(total=every)) as r:
                    if r.status != 200:
                        # 404: a new head that does not know the job (the follow's next status
                        # request says so); 5xx: a head still starting up.
                        raise ContactLost(f"HTTP {r.status} for the job's status")
                    await r.read()
            except contact_errors():
                if time.monotonic() - self._heard >= every:
                    raise
