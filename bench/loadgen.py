"""Drive one URL with ``wrk`` (a C load generator using ~0.1 core) and read its results.

wrk's Lua ``done`` hook prints one JSON line with the counts and latency percentiles; the
status hook that counts 503s separately is only installed where it matters (overload), since
it makes wrk parse every response in Lua.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.payloads import Payload

MARKER = "BENCH_RESULT "
# wrk's own socket timeout; a request slower than this counts as an error.
SOCKET_TIMEOUT_S = 10

_SCRIPT = """
local f = assert(io.open({body_path}, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
{headers}
local threads = {{}}
local overloaded = 0
function setup(thread)
  table.insert(threads, thread)
end
{status_hook}
function done(summary, latency, requests)
  local rejected = 0
  for _, t in ipairs(threads) do rejected = rejected + (t:get("overloaded") or 0) end
  local e = summary.errors
  io.write(string.format(
    '{marker}{{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"overloaded":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    rejected, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
"""

_STATUS_HOOK = """
function response(status, headers, body)
  if status == 503 then
    overloaded = overloaded + 1
    wrk.thread:set("overloaded", overloaded)
  end
end
"""


@dataclass(frozen=True)
class LoadResult:
    """What wrk saw: counts, errors and latency percentiles (seconds)."""

    requests: int
    duration_s: float
    socket_errors: int
    non_2xx: int
    overloaded: int
    p50_s: float
    p90_s: float
    p99_s: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (.ci/run does this)")
    return found


def _lua(payload: Payload, body_path: Path, count_503: bool) -> str:
    headers = list(payload.headers)
    if payload.content_type is not None:
        headers.insert(0, ("Content-Type", payload.content_type))
    header_lines = "\n".join(
        f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}" for name, value in headers
    )
    return _SCRIPT.format(
        body_path=json.dumps(str(body_path)),
        headers=header_lines,
        status_hook=_STATUS_HOOK if count_503 else "",
        marker=MARKER,
    )


def run_wrk(
    url: str, payload: Payload, *, connections: int, duration_s: float, count_503: bool = False
) -> LoadResult:
    """Keep ``connections`` requests in flight against ``url`` for ``duration_s`` seconds."""
    threads = max(1, min(2, connections))
    with tempfile.TemporaryDirectory(prefix="digits-bench-") as folder:
        body_path = Path(folder) / "body.bin"
        body_path.write_bytes(payload.body)
        script = Path(folder) / "script.lua"
        script.write_text(_lua(payload, body_path, count_503), encoding="utf-8")
        command = [
            wrk_binary(),
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            f"--timeout={SOCKET_TIMEOUT_S}s",
            "-s",
            str(script),
            url,
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    raw = json.loads(line[len(MARKER) :])
    return LoadResult(
        requests=raw["requests"],
        duration_s=raw["duration_us"] / 1e6,
        socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        non_2xx=raw["status"],
        overloaded=raw["overloaded"],
        p50_s=raw["p50"] / 1e6,
        p90_s=raw["p90"] / 1e6,
        p99_s=raw["p99"] / 1e6,
    )


def combine(results: list[LoadResult]) -> LoadResult:
    """Several runs of one scenario as one: counts summed, each percentile the median of the
    runs' (wrk reports percentiles, not samples, so they cannot be merged exactly)."""
    middle = statistics.median_high  # one run's real figure, never an average of two
    return LoadResult(
        requests=sum(r.requests for r in results),
        duration_s=sum(r.duration_s for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        overloaded=sum(r.overloaded for r in results),
        p50_s=middle([r.p50_s for r in results]),
        p90_s=middle([r.p90_s for r in results]),
        p99_s=middle([r.p99_s for r in results]),
    )
