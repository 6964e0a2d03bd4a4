"""Why the model gave its answer: saliency maps (occlusion.py) and their overlays (overlay.py).

The computing runs in the worker processes, beside the model: nothing here imports fastapi,
starlette, uvicorn or prometheus_client. The server process reads only the method's name and
parameters (occlusion.py, numpy alone). The method and its measurement: docs/performance.md,
"Explanations".
"""
