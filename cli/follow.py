"""Follow a submitted Ray job through the dashboard, with every wait bounded.

Ray's JobSubmissionClient sends its HTTP requests with no timeout and tails the logs over a
websocket with no heartbeat, so a head that vanishes without closing its connections (a node
gone, a half-open port-forward) would hang the command for good. Here every request has a
timeout, the log stream a heartbeat, and losing contact opens a window to regain it: the head
may come back (KubeRay recreates a deleted head pod, and cli/dashboard.py forwards new
connections to whichever pod is then behind the head Service). Without GCS fault tolerance a
new head has an empty job table, so a job it does not know was lost with the old one.

The two limits, in seconds, from the environment (tests make them short):

  RAY_PLATFORM_DASHBOARD_TIMEOUT   each request's connect and read timeout, and the log
                                   stream's heartbeat (no pong within half of it: contact
                                   lost); default 30
  RAY_PLATFORM_RECONNECT_TIMEOUT   how long to try regaining contact once it is lost, before
                                   giving up with exit 6; default 120

So a follow whose head went silent exits 6 within about RECONNECT + 2.5 x DASHBOARD + 1
seconds: up to 1.5 x DASHBOARD to notice (a ping after DASHBOARD of quiet, half that for the
pong), the window, and a last try (a pause of RETRY_EVERY, one request) that began inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped]

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
RETRY_EVERY = 1.0
"""Seconds between tries while contact is lost (the port-forward reconnects meanwhile)."""
CLOSE_WITHIN = 3.0
"""Seconds a Ctrl-C waits for the log stream to close (a websocket close handshake)."""


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
    ConnectionError, aiohttp's ClientError is neither, and a heartbeat or read timeout is a
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
        aiohttp/OS error) when it breaks or falls silent."""
        # A loop of its own, closed after: asyncio.run would leave the thread without a current
        # event loop, which breaks callers (and test runs) that expect one.
        loop = asyncio.new_event_loop()
        tail = loop.create_task(self._tail())
        try:
            loop.run_until_complete(tail)
        except KeyboardInterrupt:
            # Ctrl-C (the caller detaches): close the log stream's websocket and session here,
            # within a bound. Left suspended, the garbage collector closed them during the
            # interpreter's shutdown: "Exception ignored ... coroutine ignored GeneratorExit" on
            # every Ctrl-C, and once (CI) a command that never exited.
            tail.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.wait({tail}, timeout=CLOSE_WITHIN))
            raise
        finally:
            with contextlib.suppress(BaseException):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _tail(self) -> None:
        import aiohttp

        self._offset = 0
        url = f"{self._client.get_address()}/api/jobs/{self._job_id}/logs/tail"
        limit = self._limits.dashboard
        # Ray's own tail_job_logs sends no heartbeat: a head gone without a FIN leaves its
        # receive waiting forever. With one, a ping unanswered for limit/2 ends the stream,
        # while a job that prints nothing for hours is still followed.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=limit, sock_read=limit)
        async with (
            aiohttp.ClientSession(headers=self._headers, timeout=timeout) as session,
            session.ws_connect(url, heartbeat=limit) as ws,
        ):
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._emit(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    raise ContactLost(f"the log stream failed: {ws.exception()}")
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    # No close frame (the connection just ended) is 1006, ABNORMAL_CLOSURE.
                    if ws.close_code in (None, aiohttp.WSCloseCode.ABNORMAL_CLOSURE):
                        raise ContactLost("the log stream was cut")
                    return
