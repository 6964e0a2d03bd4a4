"""Tests of the throughput work: fast helpers stay exact, the benchmark runs end to end."""
