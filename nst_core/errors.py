"""The exception types of the engine; each carries a message meant for the end user."""


class NSTError(Exception):
    """Base class: ``str(exc)`` is a sentence a user can read."""


class ImageError(NSTError):
    """An input is not a usable image (not an image, corrupt, too large, too small...)."""


class ModelFileError(NSTError):
    """A weights file is missing or malformed."""


class OptionsError(NSTError, ValueError):
    """A render was asked for with options that cannot be rendered (alpha outside 0–1, bad weights...)."""
