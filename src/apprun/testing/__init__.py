"""Helpers for tests and benchmarks: real engines on free loopback ports."""
