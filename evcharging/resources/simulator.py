"""Where a simulation launched from Dagster runs: a local process, or a container of its own.

Both go through Dagster Pipes, so progress lines and the run's manifest come back to the Dagster
run the same way: ``PipesSubprocessClient`` runs ``python -m evcharging.simulation`` beside the run
(the native stack); with ``docker_image`` set, dagster-docker's ``PipesDockerClient`` starts that
image on ``docker_network`` (the compose deployment, where the simulator has its own container).
"""

from __future__ import annotations

import sys

import dagster as dg
from pydantic import Field

ENTRY_MODULE = "evcharging.simulation"  # the simulator's CLI, reporting through Pipes


class SimulatorResource(dg.ConfigurableResource):
    """How to launch the simulator: a subprocess (default) or a Docker container."""

    docker_image: str | None = Field(None, description="Run the simulator in a container of this image "
                                                       "(dagster-docker's PipesDockerClient); unset = a subprocess.")
    docker_network: str | None = Field(None, description="The Docker network the container joins (reaches Kafka, MongoDB).")

    @property
    def launcher(self) -> str:
        return "docker" if self.docker_image else "subprocess"

    def run(self, context: dg.AssetExecutionContext, args: list[str], env: dict[str, str]):
        """Run the simulator with ``args`` and ``env`` through Pipes; returns the completed invocation."""
        if self.docker_image:
            from dagster_docker import PipesDockerClient

            kwargs = {"network": self.docker_network} if self.docker_network else {}
            return PipesDockerClient().run(context=context, image=self.docker_image, env=env,
                                           command=["python", "-m", ENTRY_MODULE, *args], container_kwargs=kwargs)
        return dg.PipesSubprocessClient().run(context=context, env=env,
                                              command=[sys.executable, "-m", ENTRY_MODULE, *args])
