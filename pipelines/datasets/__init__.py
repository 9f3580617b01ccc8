"""Datasets: the deterministic synthetic shop generator (``recops data generate``)."""

from pipelines.datasets.generator import (
    DayBatch,
    GenerationSummary,
    GeneratorConfig,
    ShopWorld,
    build_world,
    generate_batches,
    generate_dataset,
    write_batch,
)

__all__ = [
    "DayBatch",
    "GenerationSummary",
    "GeneratorConfig",
    "ShopWorld",
    "build_world",
    "generate_batches",
    "generate_dataset",
    "write_batch",
]
