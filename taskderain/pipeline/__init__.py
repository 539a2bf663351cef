"""The derain → task heads pipeline, its YAML configuration, the builders and input handling."""

from .build import build_derainer, build_head, build_heads, build_pipeline
from .config import ConfigError, load_config
from .pipeline import Pipeline, PipelineResult

__all__ = ["ConfigError", "Pipeline", "PipelineResult", "build_derainer", "build_head", "build_heads",
           "build_pipeline", "load_config"]
