"""Benchmarks that write JSON (DESIGN 3.5): each compares against a baseline run in the same process."""
