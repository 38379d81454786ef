"""Importing this module registers every stage (in pipeline order)."""

from pipelines.stages import scrape, build_data, train, ppo, eval_policy, steer, study  # noqa: F401
from pipelines.stages import report  # noqa: F401  (last: it reads every other stage)
from pipelines.stages import publish  # noqa: F401  (asked for by name, never part of the demo)
