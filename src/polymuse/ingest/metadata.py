"""Song metadata: tags read with mutagen, else the file name (`Artist - Title.ext`)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

from polymuse.store.catalog import SongInfo

_ID_TAGS = {
    "musicbrainz_trackid": "musicbrainz_recording",
    "musicbrainz_releasetrackid": "musicbrainz_track",
    "musicbrainz_albumid": "musicbrainz_release",
    "isrc": "isrc",
    "acoustid_id": "acoustid",
}
_TRACK_NUMBER = re.compile(r"^\s*\d{1,3}\s*(?:[-.)_]\s*|\s+)(?=\S)")
_YEAR = re.compile(r"\b(\d{4})\b")
_MAX_TAG_CHARS = 500


def read_tags(path: str | Path) -> dict[str, str]:
    """Text tags as {name: value} (mutagen's "easy" names); {} when there are none or on error."""
    import mutagen

    try:
        tagged = mutagen.File(str(path), easy=True)
    except Exception:  # noqa: BLE001 - tag readers raise anything on odd files; tags are optional
        return {}
    if tagged is None or not tagged.tags:
        return {}
    tags: dict[str, str] = {}
    for key, value in tagged.tags.items():
        values = value if isinstance(value, list) else [value]
        text = "; ".join(str(v) for v in values if str(v).strip())
        if text and isinstance(key, str):
            tags[key.lower()] = text[:_MAX_TAG_CHARS]
    return tags


def song_info(path: str | Path, tags: dict[str, Any]) -> SongInfo:
    """Title, artist, album, year and ids: tags first, the file name for what they lack."""
    path_artist, path_title = parse_file_name(Path(path).stem)
    title = _clean(tags.get("title")) or path_title
    artist = _clean(tags.get("artist") or tags.get("albumartist")) or path_artist
    from_tags = [bool(_clean(tags.get("title"))), bool(_clean(tags.get("artist")))]
    source = "tags" if all(from_tags) else "mixed" if any(from_tags) else "path"
    year_match = _YEAR.search(str(tags.get("date") or tags.get("originaldate") or ""))
    return SongInfo(
        title=title,
        artist=artist,
        album=_clean(tags.get("album")),
        year=int(year_match[1]) if year_match else None,
        external_ids={out: str(tags[key]) for key, out in _ID_TAGS.items() if tags.get(key)},
        match_key=match_key(artist, title),
        source=source,
    )


def parse_file_name(stem: str) -> tuple[str | None, str]:
    """(artist, title) from `Artist - Title`, `01 - Artist - Title` or just `Title`."""
    text = " ".join(stem.replace("_", " ").split())
    parts = [p.strip() for p in text.split(" - ") if p.strip()]
    if len(parts) >= 3 and parts[0].isdigit():
        parts = parts[1:]
    if len(parts) >= 2:
        return parts[0], " - ".join(parts[1:])
    title = _TRACK_NUMBER.sub("", text) or text
    return None, title or stem


def match_key(artist: str | None, title: str | None) -> str | None:
    """Normalised `artist / title` that files of one song share; None unless both are known."""
    if not artist or not title:
        return None
    norm = lambda s: " ".join(unicodedata.normalize("NFKC", s).casefold().split())  # noqa: E731
    return f"{norm(artist)} / {norm(title)}"


def _clean(value: object) -> str | None:
    text = " ".join(str(value).split()) if value is not None else ""
    return text or None
