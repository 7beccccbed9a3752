"""The exception classes of this library."""


class PeftError(Exception):
    """Base of PEFT's own errors."""


class NoMatchingPeftModuleError(PeftError, ValueError):
    """The adapter being injected matched no module (or parameter) of the base model.

    Usually a misconfigured ``target_modules``; code that adds such an adapter on purpose can catch this error.
    A ``ValueError`` too, like the error raised before this class existed.
    """
