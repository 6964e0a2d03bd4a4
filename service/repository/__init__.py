"""The model repository: which file serves, how a new one replaces it, what each did.

loader.py (server) loads and swaps a model while serving; gate.py (a child process, the only
one here that loads ONNX Runtime) checks a file before it may serve; staging.py keeps the
private copies the workers open; statistics.py counts what each model version did (Triton's
statistics extension). This file imports nothing, so either side may import the package.
"""
