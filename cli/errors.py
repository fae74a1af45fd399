"""Exit codes of the `ray-platform` commands and the one error type that carries them.

Raised by the shared modules (outputs, package, buckets, dashboard) as well as by the commands;
cli/main.py prints it as one line, `ray-platform <command>: <message>`, and exits with its code.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """Process exit codes; scripts (CI, schedulers) branch on them, so they are stable. Each
    command's `--help` lists those it uses (`submit`: all of them)."""

    SUCCEEDED = 0
    """The job finished with status SUCCEEDED (or `--dry-run` printed its plan)."""
    JOB_FAILED = 1
    """The job ran (or tried to set up its runtime_env) and ended FAILED."""
    USAGE = 2
    """Bad command line (argparse's own code), including an entrypoint whose script is not in
    the working directory."""
    OUTPUTS = 3
    """The stack, its outputs file, or an output the command needs is missing or malformed."""
    WORKING_DIR = 4
    """The working directory cannot be shipped: missing, empty, unreadable, over `--max-size`,
    or holding what a zip must not carry (a link out of it, a socket/FIFO/device, a name that
    is not UTF-8)."""
    BUCKET = 5
    """The bucket cannot be reached, or refused the check or the upload."""
    CLUSTER = 6
    """The dashboard cannot be reached (no port-forward, no head pod, API down), or contact
    with the Ray head was lost while following the job and not regained in time, or the head
    came back without the job."""
    AUTH = 7
    """The Ray auth token is missing, unreadable or refused by the cluster."""
    POLICY = 8
    """Refused by the stack's mode: `pip`/`uv` in a prod submit."""
    JOB_STOPPED = 9
    """The job was stopped (`ray job stop`) before it finished."""
    REGISTRY = 10
    """`image build`: a registry cannot be reached, refused a read or the push, or served
    something other than the digest asked for."""
    REQUIREMENTS = 11
    """`image build`: the requirements conflict with what the base image pins, or cannot be
    resolved (or downloaded) for its Python and platform."""
    DETACHED = 130
    """Ctrl-C: the command detached; the job keeps running on the cluster."""


class CliError(Exception):
    """A failure the user can act on: one line of text and the exit code that goes with it.
    (It was `SubmitError` while `submit` was the only command.)"""

    def __init__(self, code: Exit, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        """Printed on the lines after the message: what to run next (not part of the error)."""
