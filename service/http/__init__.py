"""The HTTP layer: FastAPI routes, middleware, schemas and error rendering; it only
translates between HTTP and the predictor. Never imports cv2, onnxruntime, service.imaging,
service.model or service.workers.process: the server process runs no image or model code.
"""
