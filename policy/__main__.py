"""What the engine runs (via the language host's RunPlugin) for `--policy-pack policy`."""

import sys
from pathlib import Path

# The rules import each other as the `policy` package, so its parent must be importable whatever
# directory the engine starts the pack from.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policy.pack import serve

serve()
