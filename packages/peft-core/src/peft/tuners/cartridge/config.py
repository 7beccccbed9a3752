"""The reference's module path of ``CartridgeConfig`` (defined in ``peft.tuners.cartridge``)."""

from peft.tuners.cartridge import CartridgeConfig

__all__ = ["CartridgeConfig"]
