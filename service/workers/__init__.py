"""The worker processes that decode, normalise and classify, and the pool that feeds them.

pool, generations, supervisor and connection run in the server process and never import
cv2, onnxruntime or service.imaging; process and shadow run in a worker and never import
fastapi, starlette, uvicorn or prometheus_client. This file imports nothing, so either side
may import the package.
"""
