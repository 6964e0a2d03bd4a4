"""The worker processes that decode, normalise and classify, and the pool that feeds them.

pool, supervisor and connection run in the server process and never import cv2, onnxruntime
or service.imaging; process runs in a worker and never imports fastapi, starlette, uvicorn
or prometheus_client. This file imports nothing, so either side may import the package.
"""
