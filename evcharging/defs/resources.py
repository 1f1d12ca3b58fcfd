"""One resource per external system, bound from settings by the project's single factory.

Settings are read when the code location loads its definitions, not when this module is imported;
secrets are bound as ``EnvVar`` (see :mod:`evcharging.resources.from_settings`).
"""

import dagster as dg

from evcharging.resources.from_settings import resources as resources_from_settings
from evcharging.settings import load_settings


@dg.definitions
def resources() -> dg.Definitions:
    # load_settings also exports the local stack's generated secrets, so the EnvVars resolve in runs
    return dg.Definitions(resources=resources_from_settings(load_settings(), secrets_as_env=True))
