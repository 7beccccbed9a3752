"""The reference's module path of this name; it is defined in the package itself."""

from peft.tuners.fourierft import FourierFTModel

__all__ = ["FourierFTModel"]
