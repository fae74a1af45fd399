"""Secret settings as resources get them: through Pulumi's config API, never re-wrapped by hand.

The settings validate a secret's plain value like any other (a `SecretStr` field: checked, never
echoed). What a resource receives is read again with `pulumi.Config`'s secret readers, which mark
the value secret where it enters the program: nothing downstream has to remember
`Output.secret(...)`, and a value that is a secret in the stack file (`{secure: ...}`) cannot
reach a resource as plain text through a path that forgot it.
"""

from __future__ import annotations

import functools
import operator

import pulumi

from infra.settings.errors import CONFIG_PREFIX


def secret_setting(key: str, *path: str) -> pulumi.Output[str]:
    """`ray-platform:<key>` as a Pulumi secret; with `path`, the value at that path inside the
    key's mapping (e.g. `secret_setting("local", "objectStore", "secretAccessKey")`: the engine
    marks a whole top-level key secret when any value inside it is, so the block is read as one
    secret object and the value taken from it)."""
    config = pulumi.Config(CONFIG_PREFIX)
    if not path:
        return config.require_secret(key)
    block = config.require_secret_object(key)
    return block.apply(lambda value: str(functools.reduce(operator.getitem, path, value)))
