"""The apps the benchmark measures the service against, each written as its user would, and
run under plain uvicorn (``python -m uvicorn bench.peers.tutorial:app --workers 2``):

- ``noop``: a plain FastAPI app whose multipart route reads the upload (``UploadFile``) and
  answers a constant: the framework's own ceiling for this request.
- ``tutorial``: the obvious FastAPI + Pillow + ONNX Runtime ``/predict``.
"""
