"""``python -m bench.features``: what explanations, traces and corrections cost, side by side.

Starts the service several times at once on loopback, each a configuration of this tree:
everything off (the default), tracing on (exporting to an OTLP receiver in this process),
tracing on with 5 % of requests sampled (OTEL_TRACES_SAMPLER), feedback on (a temporary
corrections folder); with ``--baseline DIR``, also the service of another checkout (for
example the commit before these features, from ``git archive``), to show that with the
features off every figure is where it was. Their /predict runs alternate in
short slices, so a shared machine's drift falls on all of them alike; each row gives the
event loop's and the workers' CPU per request, measured over its own slices. Then the cost of
?explain=true, on the same server, alternating with plain requests.

    python -m bench.features                            # about 4 minutes
    python -m bench.features --baseline /tmp/digits-base --duration 6 --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.cpu import CpuSeconds, cpu_by_role
from bench.loadgen import LoadResult, combine, run_wrk, wrk_binary
from bench.otlp import Receiver, running_receiver
from bench.payloads import Payload, digit_png, multipart
from bench.report import wait_idle
from bench.server import RunningService, running_service
from client.cli import positive_float, positive_int
from service.settings import Settings

BATCH_FILES = 64
SAMPLED = 0.05  # the share of requests traced in the sampled configuration


@dataclass
class Runs:
    """One configuration's slices of one scenario: wrk's results and the CPU they cost."""

    results: list[LoadResult] = field(default_factory=list)
    cpu: CpuSeconds = field(default_factory=lambda: CpuSeconds(0.0, 0.0))

    def row(self, scenario: str, name: str, base: LoadResult | None) -> str:
        load = combine(self.results)
        per = CpuSeconds(self.cpu.front_ends / load.requests, self.cpu.workers / load.requests)
        ratio = f"{load.requests_per_s / base.requests_per_s:.2f}x" if base else "-"
        errors = load.non_2xx + load.socket_errors
        return (
            f"| {scenario} | {name} | {load.requests_per_s:,.0f} | {ratio} | "
            f"{load.p50_s * 1000:.2f} | {load.p99_s * 1000:.2f} | {per.front_ends * 1e6:.0f} | "
            f"{per.workers * 1e6:.0f} | {errors} |"
        )


HEADER = (
    "| scenario | service | req/s | vs off | p50 ms | p99 ms | loop CPU us/req | "
    "worker CPU us/req | errors |\n|---|---|---|---|---|---|---|---|---|"
)


def _slice(
    runs: Runs, server: RunningService, path: str, payload: Payload, conn: int, seconds: float
) -> None:
    wait_idle(server.url)
    before = cpu_by_role(server.process.pid)
    runs.results.append(
        run_wrk(f"{server.url}{path}", payload, connections=conn, duration_s=seconds)
    )
    runs.cpu += cpu_by_role(server.process.pid) - before


@contextmanager
def _services(
    baseline: Path | None, model: str, configs: set[str]
) -> Iterator[tuple[dict[str, RunningService], Receiver]]:
    env = {"DIGITS_MODEL_PATH": model, "DIGITS_ACCESS_LOG": "true"}
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="digits-fb-")))
        receiver = stack.enter_context(running_receiver())
        servers: dict[str, RunningService] = {}
        if baseline is not None:
            servers["baseline"] = stack.enter_context(running_service(env, cwd=baseline))
        servers["off"] = stack.enter_context(running_service(env))
        traced = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        sampled = {**traced, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}
        sampled["OTEL_TRACES_SAMPLER_ARG"] = str(SAMPLED)
        for name, environment in (
            ("tracing on", traced),
            (f"tracing on, {SAMPLED:.0%} sampled", sampled),
            ("feedback on", {**env, "DIGITS_FEEDBACK_DIR": str(folder)}),
        ):
            if name.split(",")[0].replace(" on", "") in configs:
                servers[name] = stack.enter_context(running_service(environment))
        yield servers, receiver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.features", description=__doc__)
    parser.add_argument("--duration", type=positive_float, default=10.0, help="s per scenario")
    parser.add_argument("--rounds", type=positive_int, default=5, help="slices per scenario")
    parser.add_argument("--concurrency", type=positive_int, default=16)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to run")
    parser.add_argument(
        "--features",
        default="tracing,feedback,explain",
        help="which features to measure on (comma-separated; empty: off and baseline only)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    wrk_binary()
    model = str(Settings().resolved_model_path)
    png = digit_png()
    one = multipart("file", [("digit.png", png, "image/png")])
    many = multipart("files", [(f"d{i}.png", png, "image/png") for i in range(BATCH_FILES)])
    c, seconds = args.concurrency, args.duration / args.rounds
    lines = [HEADER]
    features = {name.strip() for name in args.features.split(",") if name.strip()}
    with _services(args.baseline, model, features) as (servers, receiver):
        for server in servers.values():  # warm up: every worker has seen a batch
            run_wrk(f"{server.url}/predict", one, connections=c, duration_s=1)
            run_wrk(f"{server.url}/predict?explain=true", one, connections=2, duration_s=1)
        scenarios = (
            (f"/predict PNG c={c}", "/predict", one, c),
            (f"/predict/batch {BATCH_FILES} PNGs c=4", "/predict/batch", many, 4),
        )
        for scenario, path, payload, conn in scenarios:
            runs = {name: Runs() for name in servers}
            for _ in range(args.rounds):
                for name, server in servers.items():
                    _slice(runs[name], server, path, payload, conn, seconds)
            base = combine(runs["off"].results)
            lines += [run.row(scenario, name, base) for name, run in runs.items()]
        off = servers["off"]
        for scenario, path, payload, conn in (
            ()
            if "explain" not in features
            else (
                (f"/predict PNG c={c}", "/predict", one, c),
                ("/predict/batch 64 PNGs c=4", "/predict/batch", many, 4),
            )
        ):
            plain, explained = Runs(), Runs()
            for _ in range(args.rounds):
                _slice(plain, off, path, payload, conn, seconds)
                _slice(explained, off, f"{path}?explain=true", payload, conn, seconds)
            base = combine(plain.results)
            lines.append(plain.row(scenario, "off (again, beside explain)", base))
            lines.append(explained.row(f"{scenario} ?explain=true", "off", base))
        spans, exports = len(receiver.spans), receiver.requests
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.write(
        f"(tracing on: the OTLP receiver got {spans:,} spans in {exports:,} exports)\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
