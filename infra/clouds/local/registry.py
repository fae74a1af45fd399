"""The local node's image registry: nothing to create, the repository the stack names
(`local.imageRepository`, set by the tools that run the registry) is exported for
`ray-platform image build`."""

from __future__ import annotations

import contract.outputs as out
from infra.clouds.adapter import WiringPart


def image_repository(repository: str) -> WiringPart:
    return WiringPart(outputs={out.IMAGE_REPOSITORY: repository})
