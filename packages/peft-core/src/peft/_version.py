"""The version of peft, shared by the package and the configs it saves (the distributions' metadata says the same)."""

__version__ = "1.0.0.dev0"
