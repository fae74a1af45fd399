"""Where the commands talk to people: stderr, so that stdout carries only what a script reads
(`--dry-run`'s plan, a job's logs)."""

from __future__ import annotations

import sys


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
