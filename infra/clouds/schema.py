"""`python -m infra.clouds.schema [--write]`: the stack files' JSON Schema, every cloud of the
table (`infra.settings.schema` builds it; this module only knows where it is committed).

Without `--write` it exits 1 when the committed file differs from what the models give.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from infra.clouds import SETTINGS_MODELS
from infra.settings.schema import stack_file_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema" / "ray-platform.schema.json"


def rendered() -> str:
    """The schema as committed: stable key order, one trailing newline."""
    return json.dumps(stack_file_schema(SETTINGS_MODELS), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.clouds.schema", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the committed schema")
    args = parser.parse_args(argv)
    text = rendered()
    if args.write:
        SCHEMA_FILE.parent.mkdir(exist_ok=True)
        SCHEMA_FILE.write_text(text)
        return 0
    if not SCHEMA_FILE.is_file() or SCHEMA_FILE.read_text() != text:
        print(
            f"{SCHEMA_FILE.name} is out of step with the settings models: "
            "run python -m infra.clouds.schema --write",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
