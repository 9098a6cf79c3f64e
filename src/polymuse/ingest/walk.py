"""Finding the audio files under the paths a user gives."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from polymuse.errors import UserError

AUDIO_EXTENSIONS = frozenset(
    {
        ".aac",
        ".aif",
        ".aifc",
        ".aiff",
        ".alac",
        ".ape",
        ".caf",
        ".flac",
        ".m4a",
        ".mka",
        ".mp2",
        ".mp3",
        ".mp4",
        ".oga",
        ".ogg",
        ".opus",
        ".wav",
        ".wave",
        ".webm",
        ".wma",
        ".wv",
    }
)


@dataclass(frozen=True)
class FileEntry:
    """A candidate file: absolute path, size and modification time (the resume fast path)."""

    path: str
    size: int
    mtime_ns: int


def walk(paths: Sequence[str | Path]) -> tuple[list[FileEntry], int]:
    """Audio files under `paths` (sorted, each once) and how many other files were ignored.

    Folders are searched recursively for audio extensions, skipping hidden files and folders
    and not following folder symlinks; files named explicitly are taken whatever their name.

    Raises:
        UserError: a path does not exist.
    """
    found: dict[str, FileEntry] = {}
    ignored = 0
    for raw in paths:
        root = Path(raw).expanduser()
        if not root.exists():
            raise UserError(f"{raw}: no such file or folder")
        if root.is_file():
            _add(found, root)
            continue
        for folder, dirs, files in os.walk(root, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                if name.startswith("."):
                    continue
                if Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                    _add(found, Path(folder) / name)
                else:
                    ignored += 1
    return sorted(found.values(), key=lambda e: e.path), ignored


def _add(found: dict[str, FileEntry], path: Path) -> None:
    resolved = path.resolve()
    try:
        st = resolved.stat()
    except OSError:
        return  # vanished or a dangling symlink between listing and stat
    if resolved.is_file():
        found[str(resolved)] = FileEntry(str(resolved), st.st_size, st.st_mtime_ns)
