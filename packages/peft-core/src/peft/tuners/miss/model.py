"""The reference's module path of this name, defined in the package itself."""

from peft.tuners.miss import MissModel as MissModel
