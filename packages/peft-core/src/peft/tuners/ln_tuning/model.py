"""The reference's module path of this name, defined in the package itself."""

from peft.tuners.ln_tuning import LNTuningModel as LNTuningModel
