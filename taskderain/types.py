"""Type aliases of the public API, defined once."""

from __future__ import annotations

import os
from typing import Union

#: a filesystem path: ``str`` or any ``os.PathLike`` (``pathlib.Path``)
PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["PathLike"]
