"""Offline-safe access to ultralytics and to model hubs: no import-time work, no hangs, clear errors.

ultralytics probes the network when it is imported (``ultralytics.utils.ONLINE``) and, while it
believes it is online, may check for updates or send usage events. :func:`import_ultralytics`
sets ``YOLO_OFFLINE=1`` first (unless the user set it), which switches those off; downloads of
named checkpoints still work where the network does. :func:`host_reachable` is the cheap DNS
probe used before any download, so an offline machine gets one clear error at once instead of
minutes of retries.
"""

from __future__ import annotations

import os
import socket
from types import ModuleType

YOLO_ASSETS_URL = "https://github.com/ultralytics/assets/releases"


class WeightsNotFoundError(FileNotFoundError):
    """A named checkpoint that is neither on disk nor downloadable here."""


def import_ultralytics() -> ModuleType:
    """Import ultralytics with its telemetry and update checks off (``YOLO_OFFLINE=1`` by default)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import ultralytics

    return ultralytics


def host_reachable(host: str, port: int = 443) -> bool:
    """True when ``host`` resolves (DNS only, no connection is opened): a fast offline test."""
    try:
        socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        return True
    except OSError:
        return False
