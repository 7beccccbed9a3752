"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.road import RoadModel

__all__ = ["RoadModel"]
