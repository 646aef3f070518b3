"""Benchmark registry and loaders (offline-first; see evals/datasets/loader.py for the data directory)."""

from evals.datasets.loader import DataError, Example, LoadedBenchmark, load_benchmark, resolve_data_dir
from evals.datasets.registry import BENCHMARKS, Benchmark, get_benchmark
from evals.datasets.templates import TEMPLATES, render, template_hash

__all__ = ["BENCHMARKS", "Benchmark", "DataError", "Example", "LoadedBenchmark", "TEMPLATES", "get_benchmark",
           "load_benchmark", "render", "resolve_data_dir", "template_hash"]
