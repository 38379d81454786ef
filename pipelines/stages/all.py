"""Importing this module registers every stage (in pipeline order)."""

from pipelines.stages import scrape, build_data, train  # noqa: F401
