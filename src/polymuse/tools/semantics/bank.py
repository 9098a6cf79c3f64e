"""The descriptor bank: words for mood, genre, instruments and texture, with links to evidence.

`data/descriptor_bank.json` holds the descriptors and `data/descriptor_bank.schema.json` their
JSON Schema. Each descriptor has English and Chinese labels and aliases; `DescriptorBank.match`
finds them in a query by exact phrase (word-bounded for Latin script, substring for Chinese), so
Chinese queries work whatever text encoder is configured.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from polymuse.errors import ParameterError
from polymuse.schema import Model

Category = Literal["mood", "genre", "instruments", "texture"]
CATEGORIES: tuple[Category, ...] = ("mood", "genre", "instruments", "texture")
FEATURES = (
    "brightness",
    "dynamics",
    "tempo_bpm",
    "mode",
    "density",
    "percussive",
    "loudness",
    "noisiness",
    "low_end",
)
"""Audio features a descriptor may link to; see `polymuse.tools.semantics.features`."""

_CJK = re.compile(r"[\u3400-\u9fff]")


class Labels(Model):
    en: str
    zh: str


class Aliases(Model):
    en: list[str] = Field(default_factory=list)
    zh: list[str] = Field(default_factory=list)


class TagLink(Model):
    """A tagger output that means (or partly means) the descriptor."""

    model: Literal["MTT", "MSD"]
    tag: str
    weight: float = Field(1.0, gt=0, le=1)

    @property
    def key(self) -> str:
        """The tag's qualified name in an encoder's tag space, e.g. 'MTT:piano'."""
        return f"{self.model}:{self.tag}"


class FeatureLink(Model):
    """A logistic rule on one audio feature: sigmoid(+-(value - center) / scale)."""

    feature: Literal[FEATURES]  # type: ignore[valid-type]
    direction: Literal["high", "low"]
    center: float
    scale: float = Field(gt=0)

    def logit(self, value: float) -> float:
        sign = 1.0 if self.direction == "high" else -1.0
        return sign * (value - self.center) / self.scale


class Descriptor(Model):
    id: str
    category: Category
    label: Labels
    aliases: Aliases = Field(default_factory=Aliases)
    description: str
    tags: list[TagLink] = Field(default_factory=list)
    features: list[FeatureLink] = Field(default_factory=list)
    stems: list[Literal["vocals", "drums", "bass", "other"]] = Field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """Every phrase that names this descriptor: labels, then aliases."""
        return [self.label.en, self.label.zh, *self.aliases.en, *self.aliases.zh]

    @property
    def text(self) -> str:
        """What the text encoder reads: the English label and the description."""
        return f"{self.label.en}: {self.description}"


class QueryMatch(Model):
    """A descriptor named in a query, and the phrase that named it."""

    descriptor_id: str
    phrase: str


class DescriptorBank:
    """The loaded bank, with lookups by id and category and phrase matching for queries."""

    def __init__(self, descriptors: list[Descriptor], *, version: int, digest: str) -> None:
        self.descriptors = descriptors
        self.version = version
        self.digest = digest
        self.by_id = {d.id: d for d in descriptors}
        if len(self.by_id) != len(descriptors):
            raise ParameterError("descriptor bank has duplicate ids")
        phrases = sorted(
            {(name.casefold(), d.id) for d in descriptors for name in d.names},
            key=lambda item: (-len(item[0]), item[0]),
        )
        self._phrases = [
            (
                phrase,
                descriptor_id,
                re.compile(
                    re.escape(phrase)
                    if _CJK.search(phrase)
                    else rf"(?<!\w){re.escape(phrase)}(?!\w)"
                ),
            )
            for phrase, descriptor_id in phrases
        ]

    def __len__(self) -> int:
        return len(self.descriptors)

    def in_category(self, category: str) -> list[Descriptor]:
        return [d for d in self.descriptors if d.category == category]

    def match(self, query: str) -> tuple[list[QueryMatch], str]:
        """Descriptors named in `query`, longest phrase first, and the text left unmatched.

        Latin-script phrases must stand as whole words ("piano" does not match "pianos' ");
        Chinese phrases match anywhere. A span is used by one phrase only, so "solo piano"
        names the solo-piano descriptor and not also piano.
        """
        text = " ".join(query.casefold().split())
        matches: list[QueryMatch] = []
        seen: set[str] = set()
        for phrase, descriptor_id, pattern in self._phrases:
            if phrase not in text:
                continue
            found = pattern.search(text)
            if found is None:
                continue
            text = text[: found.start()] + " \0 " + text[found.end() :]
            if descriptor_id not in seen:
                seen.add(descriptor_id)
                matches.append(QueryMatch(descriptor_id=descriptor_id, phrase=phrase))
        rest = " ".join(re.sub(r"[\0\W_]+", " ", text).split())
        return matches, rest


def default_bank_path() -> Path:
    return Path(str(resources.files("polymuse") / "data" / "descriptor_bank.json"))


def schema_path() -> Path:
    return Path(str(resources.files("polymuse") / "data" / "descriptor_bank.schema.json"))


def load_bank(path: Path | str | None = None) -> DescriptorBank:
    """Read and validate a descriptor bank (default: the packaged one).

    Raises:
        ParameterError: The file is missing, is not JSON, or breaks the schema.
    """
    return _load_bank(str(Path(path).resolve()) if path is not None else str(default_bank_path()))


@functools.lru_cache(maxsize=8)
def _load_bank(path: str) -> DescriptorBank:
    import jsonschema

    try:
        raw = Path(path).read_bytes()
        data = json.loads(raw)
    except (OSError, json.JSONDecodeError) as exc:
        raise ParameterError(f"cannot read descriptor bank {path}: {exc}") from exc
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=str)
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path)
        raise ParameterError(
            f"descriptor bank {path} breaks its schema at {where or 'top level'}: "
            f"{first.message} ({len(errors)} error(s))"
        )
    try:
        descriptors = [Descriptor.model_validate(item) for item in data["descriptors"]]
    except ValidationError as exc:
        raise ParameterError(f"descriptor bank {path}: {exc}") from exc
    for d in descriptors:
        if d.id.split(".", 1)[0] != d.category:
            raise ParameterError(f"descriptor {d.id} is filed under category {d.category}")
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return DescriptorBank(descriptors, version=data["version"], digest=digest)
