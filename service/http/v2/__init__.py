"""KServe V2 / Open Inference Protocol (REST): standard inference clients work unchanged.
Part of the HTTP layer: the same imports are off limits (service/http/__init__.py)."""
