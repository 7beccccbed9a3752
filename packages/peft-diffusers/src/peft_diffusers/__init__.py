"""peft integration for Diffusers.

The core finds this package through its ``peft.hosts`` entry point and calls :func:`register`. Importing it must
stay cheap: nothing here imports diffusers at module import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "1.0.0.dev0"

if TYPE_CHECKING:
    from peft.hosts import HostRegistry


def register(registry: HostRegistry) -> None:
    """Register Diffusers-specific behaviour with the core.

    Nothing to register yet: later issues fill this in (see the package's section in REQUIREMENTS.md).

    Args:
        registry: the core's :class:`peft.hosts.HostRegistry`.
    """
    del registry
