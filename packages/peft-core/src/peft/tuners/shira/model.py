"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.shira import ShiraModel

__all__ = ["ShiraModel"]
