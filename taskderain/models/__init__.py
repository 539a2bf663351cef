"""Derainers: a registry of presets, one file per architecture, and the checkpoint format."""

from .base import Derainer, pad_to_multiple
from .checkpoint import (CheckpointError, create_derainer, derainer_from_checkpoint, load_derainer, load_weights,
                         save_derainer)
from .registry import list_derainers, register_derainer

__all__ = ["Derainer", "pad_to_multiple", "create_derainer", "list_derainers", "load_derainer",
           "load_weights", "save_derainer", "derainer_from_checkpoint", "register_derainer", "CheckpointError"]
