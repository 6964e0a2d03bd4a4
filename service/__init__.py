"""Serving: the FastAPI app on ONNX Runtime. Never imports torch or training."""

__version__ = "0.1.0"
