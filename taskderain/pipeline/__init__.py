"""The derain → detect / segment pipeline, its YAML configuration and input handling."""

from .config import ConfigError, load_config
from .pipeline import Pipeline, PipelineResult

__all__ = ["ConfigError", "Pipeline", "PipelineResult", "load_config"]
