"""How uvicorn runs the service: the one place its server options live.

``python -m service`` and the benchmark's app (``bench.app``) both start here, so the
benchmark measures the server exactly as it is shipped.
"""

from __future__ import annotations

import uvicorn

from service.http.connections import GuardedProtocol
from service.settings import Settings

SERVICE_APP = "service.app:create_app"


def run_server(settings: Settings, app_factory: str = SERVICE_APP) -> bool:
    """uvicorn with one worker, our JSON logs (not its own) and a bounded graceful stop;
    False when the app never started (its lifespan failed: the model cannot be served).

    One process: the CPU work runs in the worker pool's processes, so more uvicorn workers
    would only add event loops that compete with it for the same cores.
    """
    config = uvicorn.Config(
        app_factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=1,
        loop=settings.event_loop,
        http=GuardedProtocol,  # uvicorn's httptools protocol with the limits it lacks
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        timeout_keep_alive=round(settings.keep_alive_seconds),
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.run()
    return server.started
