"""The reference's module path of :class:`PeftWarning` (defined in ``peft.utils.warnings``)."""

from peft.utils.warnings import PeftWarning

__all__ = ["PeftWarning"]
