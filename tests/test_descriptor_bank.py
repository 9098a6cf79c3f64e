"""The packaged descriptor bank: schema, coverage, links, and Chinese and English lookup."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from polymuse.errors import ParameterError
from polymuse.tools.semantics.bank import (
    CATEGORIES,
    FEATURES,
    default_bank_path,
    load_bank,
    schema_path,
)


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(default_bank_path().read_text(encoding="utf-8"))


def test_bank_matches_its_schema(raw: dict) -> None:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(raw, schema, cls=jsonschema.Draft202012Validator)


def test_bank_covers_every_category() -> None:
    bank = load_bank()
    counts = Counter(d.category for d in bank.descriptors)
    assert len(bank) >= 160
    assert set(counts) == set(CATEGORIES)
    assert min(counts.values()) >= 25, counts


def test_ids_and_names_are_unique() -> None:
    bank = load_bank()
    assert len({d.id for d in bank.descriptors}) == len(bank)
    owners: dict[str, set[str]] = {}
    for d in bank.descriptors:
        for name in d.names:
            owners.setdefault(name.casefold(), set()).add(d.id)
    shared = {name: ids for name, ids in owners.items() if len(ids) > 1}
    assert not shared, f"names that point at several descriptors: {shared}"


def test_tag_links_name_real_musicnn_tags() -> None:
    configuration = pytest.importorskip("musicnn.configuration")
    vocab = {"MTT": set(configuration.MTT_LABELS), "MSD": set(configuration.MSD_LABELS)}
    bank = load_bank()
    bad = [(d.id, t.key) for d in bank.descriptors for t in d.tags if t.tag not in vocab[t.model]]
    assert not bad


def test_feature_links_name_computed_features() -> None:
    bank = load_bank()
    used = {f.feature for d in bank.descriptors for f in d.features}
    assert used <= set(FEATURES)
    assert {"brightness", "dynamics", "tempo_bpm", "mode", "density"} <= used


def test_every_descriptor_has_evidence_or_is_text_only() -> None:
    """Descriptors without tags or features rely on text similarity; keep them a minority."""
    bank = load_bank()
    bare = [d.id for d in bank.descriptors if not d.tags and not d.features]
    assert len(bare) < len(bank) // 5, bare


@pytest.mark.parametrize("language", ["en", "zh"])
def test_each_label_finds_its_descriptor(language: str) -> None:
    bank = load_bank()
    for d in bank.descriptors:
        label = getattr(d.label, language)
        matches, _ = bank.match(f"  {label} ")
        assert matches and matches[0].descriptor_id == d.id, (label, matches[:2])


def test_match_reads_chinese_sentences_and_longest_phrases() -> None:
    bank = load_bank()
    matches, rest = bank.match("安静的钢琴独奏")
    assert [m.descriptor_id for m in matches] == ["instruments.solo_piano", "mood.calm"]
    assert rest == "的"
    matches, rest = bank.match("Calm solo piano, please")
    assert {m.descriptor_id for m in matches} == {"instruments.solo_piano", "mood.calm"}
    assert rest == "please"
    matches, _ = bank.match("pianos")
    assert not matches


def test_broken_bank_is_rejected_with_its_path(tmp_path: Path, raw: dict) -> None:
    broken = json.loads(json.dumps(raw))
    del broken["descriptors"][3]["label"]["zh"]
    path = tmp_path / "bank.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(ParameterError, match=r"bank\.json.*descriptors/3/label"):
        load_bank(path)


def test_digest_follows_content(tmp_path: Path, raw: dict) -> None:
    same = tmp_path / "same.json"
    same.write_text(json.dumps(raw, indent=3, ensure_ascii=False), encoding="utf-8")
    assert load_bank(same).digest == load_bank().digest
    changed = json.loads(json.dumps(raw))
    changed["descriptors"][0]["description"] += " Changed."
    other = tmp_path / "other.json"
    other.write_text(json.dumps(changed), encoding="utf-8")
    assert load_bank(other).digest != load_bank().digest
