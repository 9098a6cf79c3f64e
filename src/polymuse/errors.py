"""One exception hierarchy; the CLI maps it to exit codes and one-line messages."""

from __future__ import annotations


class PolymuseError(Exception):
    """Base of every error Poly-Muse raises on purpose."""


class UserError(PolymuseError):
    """Bad usage: a wrong option, a missing argument, an impossible request."""


class ParameterError(PolymuseError):
    """A library function got an invalid parameter value."""


class AudioLoadError(PolymuseError):
    """An audio file cannot be read, or holds no usable audio."""

    def __init__(self, path: object, cause: str) -> None:
        super().__init__(f"{path}: {cause}")
        self.path = str(path)
        self.cause = cause


class StoreError(PolymuseError):
    """The catalogue database failed or is unreachable."""


class ModelUnavailableError(PolymuseError):
    """A backend's package or weights are not installed or not configured."""


class LLMError(PolymuseError):
    """The configured chat model failed or timed out."""
