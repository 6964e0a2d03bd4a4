"""The benchmark's table and the issue's targets, each a ratio or bound from the same run."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.cpu import CpuSeconds
from bench.inprocess import InProcessResult
from bench.loadgen import LoadResult

# Targets on a 2-core machine (issue 17): against the obvious FastAPI + Pillow + ONNX Runtime
# app run with one uvicorn process per core, and absolute ones.
PREDICT_VS_TUTORIAL_RPS = 1.6
PREDICT_VS_TUTORIAL_P99 = 1.0
LOOP_CPU_PER_PREDICT_S = 120e-6
V2_VS_ORT_IMAGES = 0.80
BATCH_IMAGES_PER_S = 18_000.0
# Accepted requests under overload must stay well inside any client's timeout: the bounded
# queue caps the wait at (queue bound / throughput), a fraction of this. Checked twice: by the
# server's histogram (from the app's first look at the request) and by wrk, which also sees
# the time a request waits before the server reads it (a connection not yet accepted).
OVERLOAD_P99_BOUND_S = 1.0
_DURATION = "digits_http_request_duration_seconds"
_IN_FLIGHT = "digits_http_requests_in_flight"


@dataclass(frozen=True)
class Row:
    scenario: str
    concurrency: str
    requests_per_s: float
    images_per_s: float
    p50_s: float
    p90_s: float
    p99_s: float
    errors: str
    failures: int

    @classmethod
    def from_load(cls, scenario: str, connections: int, result: LoadResult, images: int = 1) -> Row:
        rps = result.requests_per_s
        errors = f"{result.non_2xx} non-2xx, {result.socket_errors} socket"
        if result.overloaded:
            errors += f" ({result.overloaded} were 503)"
        return cls(
            scenario,
            str(connections),
            rps,
            rps * images,
            result.p50_s,
            result.p90_s,
            result.p99_s,
            errors,
            result.non_2xx + result.socket_errors,
        )

    @classmethod
    def from_inprocess(cls, scenario: str, batch: int, result: InProcessResult) -> Row:
        cps = result.calls_per_s
        return cls(
            scenario, "1 thread", cps, cps * batch, result.p50_s, result.p90_s, result.p99_s, "-", 0
        )


def format_table(rows: list[Row]) -> str:
    """A Markdown table: readable in a terminal and pasteable into the README as is."""
    header = ["scenario", "conc.", "req/s", "images/s", "p50 ms", "p90 ms", "p99 ms", "errors"]
    lines = [
        [
            row.scenario,
            row.concurrency,
            f"{row.requests_per_s:,.0f}",
            f"{row.images_per_s:,.0f}",
            f"{row.p50_s * 1000:.2f}",
            f"{row.p90_s * 1000:.2f}",
            f"{row.p99_s * 1000:.2f}",
            row.errors,
        ]
        for row in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]

    def render(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([render(header), separator, *(render(line) for line in lines)])


def scrape(base_url: str) -> dict[tuple[str, str, str, float], float]:
    """Cumulative request-duration bucket counts by (route, method, status, le)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10.0).text
    buckets: dict[tuple[str, str, str, float], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != _DURATION:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                labels = sample.labels
                key = (labels["route"], labels["method"], labels["status"], float(labels["le"]))
                buckets[key] = sample.value
    return buckets


def wait_idle(base_url: str, timeout_s: float = 30.0) -> None:
    """Wait until no request is in flight: wrk stops sending, but the server still finishes
    what it accepted, and that backlog must not spill into the next scenario's figures."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = httpx.get(f"{base_url}/metrics", timeout=10.0).text
        for family in text_string_to_metric_families(text):
            if family.name == _IN_FLIGHT and family.samples[0].value <= 0:
                return
        time.sleep(0.05)


def accepted_p99(
    before: dict[tuple[str, str, str, float], float],
    after: dict[tuple[str, str, str, float], float],
    route: str,
) -> float | None:
    """The 99th percentile (upper bucket edge) of 2xx answers on ``route`` between scrapes."""
    counts: dict[float, float] = {}
    for key, value in after.items():
        if key[0] == route and key[2].startswith("2"):
            counts[key[3]] = counts.get(key[3], 0.0) + value - before.get(key, 0.0)
    if not counts or counts.get(float("inf"), 0.0) <= 0:
        return None
    total = counts[float("inf")]
    return next(le for le in sorted(counts) if counts[le] >= 0.99 * total)


@dataclass(frozen=True)
class Check:
    name: str
    measured: str
    target: str
    passed: bool


@dataclass(frozen=True)
class Targets:
    checks: list[Check]

    @property
    def all_passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @classmethod
    def evaluate(
        cls,
        rows: dict[str, Row],
        concurrency: int,
        loop_cpu_per_request_s: float,
        overload: LoadResult,
        overload_p99: float | None,
    ) -> Targets:
        png, tutorial = rows[f"png_c{concurrency}"], rows["tutorial_2"]
        v2, ort, batch = rows["v2"], rows["ort_256"], rows["batch"]
        rps_ratio = png.requests_per_s / tutorial.requests_per_s
        p99_ratio = png.p99_s / tutorial.p99_s
        v2_ratio = v2.images_per_s / ort.images_per_s
        other_failures = overload.non_2xx - overload.overloaded + overload.socket_errors
        p99_text = "n/a" if overload_p99 is None else f"{overload_p99 * 1000:.0f} ms"
        bound = f"<= {OVERLOAD_P99_BOUND_S * 1000:.0f} ms"
        return cls(
            [
                Check(
                    f"/predict PNG c={concurrency} req/s vs tutorial app, 2 processes",
                    f"{rps_ratio:.2f}x",
                    f">= {PREDICT_VS_TUTORIAL_RPS:.1f}x",
                    rps_ratio >= PREDICT_VS_TUTORIAL_RPS and png.failures == 0,
                ),
                Check(
                    f"/predict PNG c={concurrency} p99 vs tutorial app, 2 processes",
                    f"{p99_ratio:.2f}x",
                    f"<= {PREDICT_VS_TUTORIAL_P99:.1f}x",
                    p99_ratio <= PREDICT_VS_TUTORIAL_P99,
                ),
                Check(
                    f"event-loop CPU per /predict (c={concurrency})",
                    f"{loop_cpu_per_request_s * 1e6:.0f} us",
                    f"<= {LOOP_CPU_PER_PREDICT_S * 1e6:.0f} us",
                    loop_cpu_per_request_s <= LOOP_CPU_PER_PREDICT_S,
                ),
                Check(
                    "V2 binary batch 256 images/s vs ONNX Runtime batch 256",
                    f"{v2_ratio:.0%}",
                    f">= {V2_VS_ORT_IMAGES:.0%}",
                    v2_ratio >= V2_VS_ORT_IMAGES and v2.failures == 0,
                ),
                Check(
                    "/predict/batch 64 PNGs images/s",
                    f"{batch.images_per_s:,.0f}",
                    f">= {BATCH_IMAGES_PER_S:,.0f}",
                    batch.images_per_s >= BATCH_IMAGES_PER_S and batch.failures == 0,
                ),
                Check(
                    "overload c=256: failures other than 503",
                    str(other_failures),
                    "0",
                    other_failures == 0,
                ),
                Check(
                    "overload c=256: p99 of accepted (server histogram bucket)",
                    p99_text,
                    bound,
                    overload_p99 is not None and overload_p99 <= OVERLOAD_P99_BOUND_S,
                ),
                # With 503s in the mix this is a lower bound for accepted requests; the
                # server's figure above is the exact one for them.
                Check(
                    "overload c=256: p99 the client saw (wrk, every answer)",
                    f"{overload.p99_s * 1000:.0f} ms",
                    bound,
                    overload.p99_s <= OVERLOAD_P99_BOUND_S,
                ),
            ]
        )

    def format(self) -> str:
        width = max(len(check.name) for check in self.checks)
        return "\n".join(
            f"{'PASS' if c.passed else 'FAIL'}  {c.name.ljust(width)}  {c.measured:>8}  "
            f"(target {c.target})"
            for c in self.checks
        )


def ratios(rows: dict[str, Row], concurrency: int) -> str:
    """/predict against every peer of the same run, for reading (not targets)."""
    png = rows[f"png_c{concurrency}"]
    lines = []
    for key, name in (
        ("noop", "the service's own no-op route"),
        ("fastapi_noop", "plain FastAPI no-op (UploadFile), 1 process"),
        ("tutorial_1", "tutorial app, 1 process"),
        ("tutorial_2", "tutorial app, 2 processes"),
    ):
        peer = rows[key]
        lines.append(
            f"/predict c={concurrency} vs {name}: {png.requests_per_s / peer.requests_per_s:.2f}x "
            f"req/s, p99 {png.p99_s / peer.p99_s:.2f}x"
        )
    return "\n".join(lines)


def capacity(rows: dict[str, Row], per_image: dict[str, CpuSeconds]) -> str:
    """Each scenario's server CPU per image, by role, and the images a second one core of
    it serves: the README's capacity model is read from these lines."""
    lines = ["server CPU per image (event loop + workers), and images/s per core of it:"]
    for key, cpu in per_image.items():
        total = cpu.front_ends + cpu.workers
        per_core = f"{1 / total:,.0f}" if total > 0 else "-"
        row = rows[key]
        lines.append(
            f"  {row.scenario:<34} c={row.concurrency:<4} {cpu.front_ends * 1e6:4.0f} + "
            f"{cpu.workers * 1e6:4.0f} us -> {per_core} per core"
        )
    return "\n".join(lines)
