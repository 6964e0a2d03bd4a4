"""Serving: the FastAPI app on ONNX Runtime. Never imports torch or training."""
