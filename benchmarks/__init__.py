"""Benchmarks: speed and memory of the trainers against a straightforward reference path (see README.md)."""
