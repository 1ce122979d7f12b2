"""The exception types of the engine; each carries a message meant for the end user."""


class NSTError(Exception):
    """Base class: ``str(exc)`` is a sentence a user can read."""


class ImageError(NSTError):
    """An input is not a usable image (not an image, corrupt, too large, too small...)."""


class ModelFileError(NSTError):
    """A weights file is missing or malformed."""


class Cancelled(NSTError):
    """A job was cancelled by its owner or ran out of its time budget."""
