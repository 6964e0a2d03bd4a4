"""Image bytes -> the 28x28 float32 input of the model, one image or a batch stage by stage.

Runs in the worker processes: never imports fastapi, starlette, uvicorn, prometheus_client,
onnxruntime or anything of service.http and service.workers.
"""

from service.imaging.batch import Prepared, prepare_batch
from service.imaging.pipeline import preprocess_image, preprocess_steps
from service.imaging.png import encode_png

__all__ = ["Prepared", "encode_png", "prepare_batch", "preprocess_image", "preprocess_steps"]
