"""Tests of the KServe V2 / Open Inference Protocol routes, driven by real V2 clients."""
