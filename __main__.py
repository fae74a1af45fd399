"""ray-platform: Ray on Kubernetes, dev and prod stacks of one program."""

import pulumi

from infra.platform import build
from infra.settings import from_pulumi

for key, value in build(from_pulumi()).items():
    pulumi.export(key, value)
