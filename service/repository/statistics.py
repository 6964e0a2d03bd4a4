"""What each served model version has done, in the shape of Triton's statistics extension
(``GET /v2/models/{name}[/versions/{version}]/stats``), accumulated in the server process.

The unit is Triton's: a *request* is one inference request of any route (``/predict``: one
image; ``/predict/batch`` and V2 ``infer``: several), an *inference* one image through the
model, an *execution* one model call (a worker batches inputs of several requests into one).
Per request: ``success`` / ``fail`` count it with its time in the service (admission to the
answer built); ``queue`` is the mean time its inputs waited for their model call,
``compute_input`` their mean decode + normalisation, ``compute_infer`` the mean time of the
model calls they ran in, ``compute_output`` building the answer. ``batch_stats`` has one entry
per execution batch size. Workers only report these numbers in their replies, as for the
Prometheus metrics. Plain integers, no locks: only the event loop writes them.

Versions are the V2 ones (integers: ``service.contract.v2_version``), as in every V2 answer:
a retrained model of the same major version adds to the same entry, and a request may name
it by its integer or by any model version that served under it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.contract import ModelInfo, v2_version

KEPT_VERSIONS = 16  # versions that served in this process, newest kept; a load adds one
_NS = 1_000_000_000


@dataclass(slots=True)
class Duration:
    """Triton's ``{"count", "ns"}``: how many, and their cumulative nanoseconds."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * _NS)

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class BatchStatistics:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class VersionStatistics:
    name: str
    version: str  # the V2 (integer) version
    model_versions: set[str] = field(default_factory=set)  # the models' own, that served
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, BatchStatistics] = field(default_factory=dict)

    def batch(self, size: int) -> BatchStatistics:
        entry = self.batches.get(size)
        if entry is None:
            entry = self.batches[size] = BatchStatistics()
        return entry

    def to_dict(self) -> dict[str, Any]:
        durations = ("success", "fail", "queue", "compute_input", "compute_infer")
        inference = {name: getattr(self, name).to_dict() for name in durations}
        inference["compute_output"] = self.compute_output.to_dict()
        # No response cache: Triton reports these as zero then, and perf_analyzer reads them.
        inference["cache_hit"] = inference["cache_miss"] = Duration().to_dict()
        return {
            "name": self.name,
            "version": self.version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": inference,
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": entry.compute_input.to_dict(),
                    "compute_infer": entry.compute_infer.to_dict(),
                    "compute_output": entry.compute_output.to_dict(),
                }
                for size, entry in sorted(self.batches.items())
            ],
            "memory_usage": [],
        }


class InferenceStatistics:
    """Statistics per (name, version), for the ``KEPT_VERSIONS`` latest versions served."""

    def __init__(self, kept: int = KEPT_VERSIONS) -> None:
        self._versions: OrderedDict[tuple[str, str], VersionStatistics] = OrderedDict()
        self._by_model: dict[tuple[str, str], VersionStatistics] = {}
        self._kept = kept

    def of(self, model: ModelInfo | None) -> VersionStatistics | None:
        if model is None:
            return None
        key = (model.name, model.version)  # the own version: one lookup on the hot path
        entry = self._by_model.get(key)
        if entry is None:
            entry = self._entry(model.name, v2_version(model.version))
            entry.model_versions.add(model.version)
            self._by_model[key] = entry
        return entry

    def _entry(self, name: str, version: str) -> VersionStatistics:
        key = (name, version)
        entry = self._versions.get(key)
        if entry is None:
            entry = self._versions[key] = VersionStatistics(name, version)
            while len(self._versions) > self._kept:
                _, dropped = self._versions.popitem(last=False)
                for model_version in dropped.model_versions:
                    self._by_model.pop((dropped.name, model_version), None)
        return entry

    # --- from the worker pool: one model call, one input of it ----------------------------

    def execution(self, model: ModelInfo | None, batch_size: int, seconds: float) -> None:
        entry = self.of(model)
        if entry is not None:
            entry.execution_count += 1
            entry.inference_count += batch_size
            batch = entry.batch(batch_size)
            batch.compute_infer.add(seconds)
            batch.compute_output.add(0.0)  # the worker sends the probabilities as they are
            batch.compute_input.count += 1

    def inputs(
        self,
        model: ModelInfo | None,
        batch_size: int,
        seconds: Sequence[float],
        refused: Collection[int],
    ) -> None:
        """A frame's images from a call of ``batch_size``, each one's decoding ``seconds``:
        the answered ones' decoding is the call's input time."""
        entry = self.of(model)
        if entry is None or not batch_size:
            return
        if refused:
            seconds = [value for index, value in enumerate(seconds) if index not in refused]
        entry.batch(batch_size).compute_input.ns += int(sum(seconds) * _NS)

    # --- from the predictor: one whole request ---------------------------------------------

    def succeeded(
        self,
        model: ModelInfo | None,
        seconds: float,
        timings: tuple[float, float, float],
        output_s: float,
    ) -> None:
        """A request answered in ``seconds``; ``timings``: its inputs' mean wait, decode and
        model-call seconds; ``output_s``: building its answer."""
        entry = self.of(model)
        if entry is None:
            return
        entry.success.add(seconds)
        queue_s, input_s, infer_s = timings
        entry.queue.add(queue_s)
        entry.compute_input.add(input_s)
        entry.compute_infer.add(infer_s)
        entry.compute_output.add(output_s)
        entry.last_inference_ms = time.time_ns() // 1_000_000

    def failed(self, model: ModelInfo | None, seconds: float) -> None:
        entry = self.of(model)
        if entry is not None:
            entry.fail.add(seconds)

    # --- for GET .../stats ---------------------------------------------------------------

    def report(self, name: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
        """``model_stats`` entries, oldest version first, optionally of one name and version
        (its integer, or a model version that served under it)."""
        return [
            entry.to_dict()
            for (entry_name, entry_version), entry in self._versions.items()
            if name in (None, entry_name)
            and (version in (None, entry_version) or version in entry.model_versions)
        ]
