"""Submit a planned job through the Ray dashboard and follow it to its end (cli/follow.py),
mapping what happens to an exit code: the last step of `ray-platform submit`.

The dashboard is reached through our own port-forward unless an address is given, with the
stack's auth token when it wants one; contact lost while following is cli/follow.py's to regain.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterator
from typing import Any

from cli import follow, outputs, plan
from cli.console import say
from cli.errors import CliError, Exit


@contextlib.contextmanager
def _dashboard(address: str | None, stack: outputs.StackOutputs) -> Iterator[tuple[str, bool]]:
    """(address, whether we forward it ourselves)."""
    if address:
        yield address, False
        return
    from cli import dashboard

    assert stack.namespace and stack.cluster_name  # outputs.load requires them without address
    with dashboard.port_forward(stack.namespace, stack.cluster_name) as forwarded:
        say(f"forwarding {forwarded} to {stack.namespace}/{stack.cluster_name}-head-svc:8265")
        yield forwarded, True


def _token(stack: outputs.StackOutputs) -> str | None:
    env_token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if env_token:
        return env_token
    if not stack.token_auth:
        return None
    from cli import dashboard

    return dashboard.cluster_token(stack.namespace, stack.cluster_name)


def _headers(token: str | None) -> dict[str, str]:
    # The header is set explicitly: Ray adds one by itself only when this process has
    # RAY_AUTH_MODE=token, and a user's shell may have neither that nor RAY_AUTH_TOKEN.
    return {"Authorization": f"Bearer {token}"} if token else {}


def _client(address: str, token: str | None, limits: follow.Limits) -> Any:
    from ray.exceptions import AuthenticationError

    try:
        return follow.client(address, _headers(token) or None, limits)
    except AuthenticationError as e:
        raise _auth_error(e, token) from None
    except follow.contact_errors():
        raise CliError(Exit.CLUSTER, f"cannot reach the Ray dashboard at {address}") from None


def _auth_error(e: Exception, token: str | None) -> CliError:
    if token is None:
        return CliError(
            Exit.AUTH, "the cluster wants a Ray auth token and none was sent: set RAY_AUTH_TOKEN"
        )
    return CliError(
        Exit.AUTH,
        "the cluster refused the Ray auth token (wrong or stale RAY_AUTH_TOKEN?): "
        + " ".join(str(e).split())[:120],
    )


def _lost(e: follow.JobLost, hint: str) -> CliError:
    if e.gone:
        return CliError(
            Exit.CLUSTER,
            f"job {e.job_id} was lost with the Ray head: {e.why} (the head was replaced and "
            "keeps no job table across restarts); submit it again",
        )
    return CliError(
        Exit.CLUSTER,
        f"lost contact with the Ray head while following job {e.job_id}: {e.why}; its fate is "
        "unknown (the head was restarted or is unreachable)",
        hint=f"check later, {hint}",
    )


def _follow_hint(job_id: str, address: str, forwarded: bool, stack: outputs.StackOutputs) -> str:
    # Our own forward dies with this process; the stack's port-forward command serves rayAddress.
    addr = (stack.ray_address or "http://127.0.0.1:8265") if forwarded else address
    first = f"with `{stack.port_forward_command}` running, " if forwarded else ""
    auth = "RAY_AUTH_MODE=token RAY_AUTH_TOKEN=… " if stack.token_auth else ""
    return (
        f"{first}follow: {auth}ray job logs -f {job_id} --address {addr}\n"
        f"  stop:   {auth}ray job stop {job_id} --address {addr}"
    )


def submit_and_follow(
    stack: outputs.StackOutputs, planned: plan.Plan, address: str | None, *, no_wait: bool
) -> Exit:
    """Submit through the dashboard (forwarded unless `address`), follow, map the status."""
    from ray.exceptions import AuthenticationError

    token = _token(stack)
    limits = follow.Limits.from_env()
    with _dashboard(address, stack) as (addr, forwarded):
        client = _client(addr, token, limits)
        job_id: str | None = None
        try:
            job_id = str(
                client.submit_job(
                    entrypoint=shlex.join(planned.entrypoint), runtime_env=planned.runtime_env
                )
            )
            say(f"submitted {job_id} to {addr}")
            if no_wait:
                say(_follow_hint(job_id, addr, forwarded, stack))
                return Exit.SUCCEEDED
            status = follow.Follower(client, job_id, _headers(token), limits).run()
        except AuthenticationError as e:
            raise _auth_error(e, token) from None
        except follow.JobLost as e:
            raise _lost(e, _follow_hint(e.job_id, addr, forwarded, stack)) from None
        except follow.contact_errors() as e:
            # Before the job was accepted (the follow handles its own): whether a submit cut
            # mid-request reached Ray is unknown, so the line says where to look.
            why = " ".join(str(e).split())[:160] or type(e).__name__
            raise CliError(
                Exit.CLUSTER,
                f"lost the Ray dashboard at {addr} while submitting ({why}); if it comes back, "
                "`ray job list` shows whether the job was accepted",
            ) from None
        except RuntimeError as e:
            raise CliError(
                Exit.CLUSTER, f"the Ray dashboard refused: {' '.join(str(e).split())[:200]}"
            ) from None
        except KeyboardInterrupt:
            if job_id is None:
                # Cut mid-request: the dashboard may have accepted the job all the same.
                raise CliError(
                    Exit.DETACHED,
                    f"interrupted while submitting: whether Ray accepted the job is unknown; "
                    f"`ray job list --address {addr}` shows it",
                ) from None
            say(f"\ndetached from {job_id}; it keeps running.")
            say(_follow_hint(job_id, addr, forwarded, stack))
            return Exit.DETACHED
    if status == "SUCCEEDED":
        say(f"{job_id} SUCCEEDED")
        return Exit.SUCCEEDED
    message = ""
    with contextlib.suppress(Exception):
        message = " ".join(str(client.get_job_info(job_id).message or "").split())[:300]
    say(f"ray-platform submit: job {job_id} {status}{': ' + message if message else ''}")
    return Exit.JOB_STOPPED if status == "STOPPED" else Exit.JOB_FAILED
