"""Components live in the directory their Pulumi type token names: `ray-platform:<domain>:<Type>`
is defined under `components/<domain>/` (read from the source; nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "components"


def type_tokens() -> dict[str, Path]:
    """Every `ray-platform:*` type token a component registers, with the file that does."""
    found = {}
    for path in sorted(COMPONENTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "__init__"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith("ray-platform:")
            ):
                found[str(node.args[0].value)] = path
    return found


def test_each_component_lives_under_its_type_tokens_domain() -> None:
    tokens = type_tokens()
    assert len(tokens) >= 10, tokens  # the walker sees the components
    misplaced = [
        f"{path.relative_to(ROOT)}: {token}"
        for token, path in tokens.items()
        if path.parent != COMPONENTS / token.split(":")[1]
    ]
    assert not misplaced, "components outside components/<domain>/:\n" + "\n".join(misplaced)
