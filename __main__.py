"""ray-platform: Ray on Kubernetes, dev and prod stacks of one program."""

import pulumi

from infra.clouds import settings_from_pulumi
from infra.platform import build

for key, value in build(settings_from_pulumi()).items():
    pulumi.export(key, value)
