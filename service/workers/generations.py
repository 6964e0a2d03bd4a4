"""Generations of worker processes: how the pool swaps its model without losing an input.

A generation is one Supervisor: ``size`` workers started from one config, so one model file.
A reload starts a new generation beside the serving one. Until each of its workers has
announced the model it opened, nothing changes: the old generation takes every input and
readiness stays as it was. Then one assignment (on the event loop, so between two requests,
never inside one) makes the new generation the one that takes new inputs, and the old one
retires: its workers answer every input they were given, on the model they opened, then
exit. An input is therefore computed by exactly one model, and the answer names it (the
worker's announced ModelInfo travels with each result).

If a worker of the new generation cannot open the model, the new generation stops and the
old one serves on as if nothing happened. The frames between server and workers do not change:
a generation is only a different set of sockets.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from typing import Any

from service.contract import ModelInfo, ModelSpec
from service.errors import NotReady
from service.workers.supervisor import Dispatcher, Supervisor

logger = logging.getLogger("service.workers")

RETIRE_DRAIN_S = 60.0  # a replaced generation answers what it was given within this


class Generations:
    """The generation that takes new inputs (``current``) and the older ones finishing."""

    def __init__(
        self, dispatcher: Dispatcher, size: int, config: dict[str, Any], timeout_seconds: float
    ) -> None:
        self._dispatcher = dispatcher
        self._size = size
        self._config = config
        self._timeout = timeout_seconds
        self.current = self._generation(ModelSpec(**config["model"]))
        self._others: set[Supervisor] = set()  # starting or retiring: close() stops them too
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def model(self) -> ModelSpec:
        return ModelSpec(**self.current.config["model"])

    async def reload(self, model: ModelSpec) -> ModelInfo:
        """Make a new generation on ``model`` the current one once all its workers are
        ready; the old one retires. Raises ModelLoadError (or NotReady when the service
        stops meanwhile) with the old generation still current."""
        fresh = self._generation(model)
        self._others.add(fresh)
        try:
            info = await fresh.start()
        finally:
            self._others.discard(fresh)
        if self.current.closed:  # the service stopped while the new workers were starting
            fresh.close()
            raise NotReady("the service is shutting down")
        old, self.current = self.current, fresh
        self._others.add(old)
        task = asyncio.get_running_loop().create_task(old.retire(RETIRE_DRAIN_S))
        self._retiring.add(task)  # a task nobody references may be collected mid-way
        task.add_done_callback(lambda done: self._retired(old, done))
        return info

    def close(self) -> None:
        """Stop every generation; what is left unanswered fails with 503."""
        self.current.close()
        for generation in list(self._others):
            generation.close()

    def _retired(self, old: Supervisor, task: asyncio.Task[None]) -> None:
        self._retiring.discard(task)
        self._others.discard(old)
        if not task.cancelled() and task.exception() is not None:
            logger.error("retiring a worker generation failed", exc_info=task.exception())
            old.close()

    def _generation(self, model: ModelSpec) -> Supervisor:
        config = {**self._config, "model": asdict(model)}
        return Supervisor(self._dispatcher, self._size, config, self._timeout)
