"""The reference's module path of ``CartridgeEncoder`` (defined in ``peft.tuners.cartridge``)."""

from peft.tuners.cartridge import CartridgeEncoder

__all__ = ["CartridgeEncoder"]
