"""Stack settings: the stack file's `ray-platform:*` keys parsed once into frozen, typed models.

Split by concern: `values` (quantities, names, images, requirements), `models` (the cloud-neutral
models and the base of each cloud's block), `rules` (cross-field rules, one function each),
`errors` (the one-line message shape), `load` (config → Settings). Each cloud's block is defined
in its own package, `infra/clouds/<cloud>/settings.py`; nothing here imports a cloud (the cloud
table hands the loader the blocks' models: `infra.clouds.load_settings`).
"""

from infra.settings.errors import CONFIG_PREFIX, SettingsError, setting_error
from infra.settings.load import from_pulumi, load
from infra.settings.models import (
    CloudSettings,
    GroupSettings,
    Mode,
    OperatorSettings,
    RaySettings,
    Settings,
    StatefulPolicy,
    WorkerGroupSettings,
)
from infra.settings.values import image_ray_version

__all__ = [
    "CONFIG_PREFIX",
    "CloudSettings",
    "GroupSettings",
    "Mode",
    "OperatorSettings",
    "RaySettings",
    "Settings",
    "SettingsError",
    "StatefulPolicy",
    "WorkerGroupSettings",
    "from_pulumi",
    "image_ray_version",
    "load",
    "setting_error",
]
