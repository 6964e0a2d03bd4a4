"""How uvicorn runs the service: the one place its server options live.

``python -m service`` and the benchmark's app (``bench.app``) both start here, so the
benchmark measures the server exactly as it is shipped. With DIGITS_FRONT_ENDS above 1,
uvicorn's process manager binds the port once and runs that many front-end processes on it,
each with its own event loop, lifespan and share of the workers; SIGTERM drains every one,
and SIGHUP to the main process reaches every front end as a checked model reload
(``FrontEnds``) instead of uvicorn's restart of them all.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from prometheus_client.multiprocess import mark_process_dead
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from service.app import DigitsApp, create_app
from service.http.connections import GuardedProtocol
from service.logs import configure_logging
from service.settings import Settings
from service.settings.messages import ConfigurationError

SERVICE_APP = "service.server:served_app"
# prometheus_client's multiprocess mode: a front end chooses its value store from this
# variable when it first imports the library, so it is set before any front end starts.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# What prometheus_client writes there: {counter,histogram,summary,gauge_<mode>}_<pid>.db
_METRICS_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")

logger = logging.getLogger("service.server")
EXIT_INTERRUPTED = 130  # as a shell reports a Ctrl-C
HUP_PING_S = 2.0  # a serving front end answers uvicorn's health ping within this


class FrontEnds(Multiprocess):
    """uvicorn's process manager, except for SIGHUP: uvicorn restarts every front end on it,
    which would open DIGITS_MODEL_PATH unchecked and fail a front end's start-up on a bad file.
    Here each live front end gets the SIGHUP and runs the checked reload of its own workers
    (service/repository/loader.py), as a single-process server does. And a front end that
    died (killed, out of memory) is marked dead in the shared metrics when uvicorn replaces
    it: with no shutdown of its own, its live gauges (requests in flight) counted for good."""

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        folder = os.environ.get(MULTIPROC_ENV)
        for pid in before - {process.pid for process in self.processes}:
            if pid is not None and folder:
                mark_process_dead(pid, folder)

    def handle_hup(self) -> None:
        reloading, starting = [], []
        for process in list(self.processes):
            # Only a started front end has its SIGHUP handler (its lifespan installs it).
            if process.pid is not None and process.is_ready(timeout=HUP_PING_S):
                os.kill(process.pid, signal.SIGHUP)
                reloading.append(process.pid)
            else:
                starting.append(process.pid)
        logger.info("SIGHUP: front ends %s reload the model", reloading)
        if starting:
            logger.warning(
                "SIGHUP: front ends %s are not serving yet; they open DIGITS_MODEL_PATH as "
                "they find it (send SIGHUP again once they are ready to be sure)",
                starting,
            )


def served_app() -> DigitsApp:
    """The app as uvicorn builds it in a front-end process: JSON logs first (a front end of
    several is a fresh interpreter), then the app on the environment's settings."""
    settings = Settings()
    configure_logging(settings.log_level)
    if settings.front_ends > 1:  # the lifespan handles SIGHUP; until then it must not kill us
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return create_app(settings)


def run_server(settings: Settings, app_factory: str = SERVICE_APP) -> None:
    """uvicorn with our JSON logs (not its own), our connection limits and a bounded
    graceful stop, with ``settings.front_ends`` front-end processes."""
    options = {
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "workers": settings.front_ends,
        "loop": settings.event_loop,
        "http": GuardedProtocol,  # uvicorn's httptools protocol with the limits it lacks
        "ws": "none",  # no WebSocket routes: an offer to switch protocols is answered as HTTP
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": settings.graceful_shutdown_seconds,
        "timeout_keep_alive": round(settings.keep_alive_seconds),
        "server_header": False,
    }
    with _shared_metrics(settings):
        if settings.front_ends == 1:
            _serve_one(uvicorn.Config(app_factory, **options))  # type: ignore[arg-type]
            return
        # What uvicorn.run does with workers > 1, with our process manager.
        config = uvicorn.Config(app_factory, **options)  # type: ignore[arg-type]
        FrontEnds(config, sockets=[config.bind_socket()]).run()


def _serve_one(config: uvicorn.Config) -> None:
    """What uvicorn.run does with one process, and a status for a forced stop: a second
    signal during the drain (Ctrl-C twice, or once during a `docker stop`) drops the
    requests in flight and skips the lifespan's shutdown, and exited 0 as a graceful stop
    does. uvicorn raises the signals it caught again once it has stopped, under the
    handlers it found: SIGTERM's says which it was."""
    server = uvicorn.Server(config)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(_exit_status(server)))
    try:
        server.run()
    except KeyboardInterrupt:  # the one Ctrl-C, raised again once the drain is done
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)
    if status := _exit_status(server):
        sys.exit(status)


def _exit_status(server: uvicorn.Server) -> int:
    """130 when a second signal cut the stop short (the lifespan's shutdown never ran to
    its end; one that came after it had is no forced stop), else 0."""
    lifespan = getattr(server, "lifespan", None)
    shut_down = (
        lifespan is not None and lifespan.shutdown_event.is_set() and not lifespan.error_occurred
    )
    return EXIT_INTERRUPTED if server.force_exit and not shut_down else 0


def exit_zero_on_sigterm() -> None:
    """A SIGTERM while the service starts (service/__main__.py installs this first thing,
    before uvicorn is up) is a stop, not a failure: under the default action it exited 143
    (docker shows "Exited (143)", Kubernetes "Error"). Once serving, ``_serve_one``'s
    handler (one front end) or the front ends' manager decides the exit status."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))


def ignore_sighup_until_serving() -> None:
    """SIGHUP's default action ends the process: one sent while the service started (a
    reloader firing as a pod restarts) killed it with exit status 129 and no line, its
    model's private copy left behind. Until the lifespan reloads on it (and once it has
    stopped), a SIGHUP is logged and ignored."""
    signal.signal(signal.SIGHUP, _sighup_while_not_serving)


def _sighup_while_not_serving(_signum: int, _frame: object) -> None:
    logger.warning(
        "SIGHUP while the service is not serving: ignored (starting, it opens "
        "DIGITS_MODEL_PATH as it finds it; send SIGHUP again once it is ready to be sure)"
    )


@contextmanager
def _shared_metrics(settings: Settings) -> Iterator[None]:
    """With several front ends, the folder they share their metrics in, named in the
    environment they inherit (a temporary one unless DIGITS_METRICS_DIR says where)."""
    if settings.front_ends == 1:
        yield
        return
    folder = settings.metrics_dir
    temporary = folder is None
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="digits-metrics-"))
    _clear_metrics_folder(folder)
    os.environ[MULTIPROC_ENV] = os.environ["DIGITS_METRICS_DIR"] = str(folder)
    try:
        yield
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)


def _clear_metrics_folder(folder: Path) -> None:
    """A previous run's values would be added to ours: its files go. Every ``*.db`` in the
    folder is read as metrics, so one the service did not write (a backup.db) is refused,
    not deleted (it was, in silence)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        found = list(folder.glob("*.db"))
        foreign = sorted(path.name for path in found if not _METRICS_FILE.fullmatch(path.name))
        if foreign:
            raise ConfigurationError(
                f"DIGITS_METRICS_DIR {folder} holds files the service did not write "
                f"({', '.join(foreign[:3])}): give the front ends a folder of their own"
            )
        for stale in found:
            stale.unlink()
    except OSError as exc:
        raise ConfigurationError(
            f"DIGITS_METRICS_DIR {folder} cannot be used: {exc.strerror or exc}"
        ) from None


def listening_problem(settings: Settings) -> str | None:
    """Why the port cannot be listened on (taken, or a host that is no address here), in
    one line naming the variables, before the workers start; None when it can. uvicorn's
    own message named neither, after a traceback-free exit 3. Bound as asyncio binds: an
    empty host is every interface, an IPv6 socket takes IPv6 alone."""
    host = settings.host
    shown = f"[{host}]" if ":" in host else host
    where = f"{shown}:{settings.port} (DIGITS_HOST, DIGITS_PORT)"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)
    except OSError as exc:  # socket.gaierror among them
        return f"cannot listen on {where}: {exc.strerror or exc}"
    return None
