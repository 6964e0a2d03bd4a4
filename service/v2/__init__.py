"""KServe V2 / Open Inference Protocol (REST): standard inference clients work unchanged."""

from service.v2.routes import router

__all__ = ["router"]
