"""Text search and similarity: query planning (English, Chinese), ranking, report folders,
and the `search` / `similar` commands end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from polymuse.commands.search import search, similar
from polymuse.errors import UserError
from polymuse.tools.encoders.text import build_text_encoder
from polymuse.tools.semantics.bank import load_bank
from polymuse.tools.semantics.scoring import build_text_index
from polymuse.tools.semantics.search import (
    SearchItem,
    items_from_reports,
    plan_query,
    rank_similar,
    rank_text,
)


@pytest.fixture(scope="module")
def bank():
    return load_bank()


@pytest.fixture(scope="module")
def hashing(bank):
    encoder = build_text_encoder("hashing")
    index = build_text_index(bank, (), encoder_name="hashing", encode=encoder.encode)
    return encoder, index


def test_phrases_in_english_and_chinese(bank) -> None:
    english = plan_query("calm solo piano", bank)
    chinese = plan_query("安静的钢琴独奏", bank)
    ids = {"mood.calm", "instruments.solo_piano"}
    assert {m.descriptor_id for m in english.matches} == ids
    assert {m.descriptor_id for m in chinese.matches} == ids
    assert all(m.via == "phrase" and m.weight == 1.0 for m in chinese.matches)


def test_leftover_words_go_through_the_text_encoder(bank, hashing) -> None:
    encoder, index = hashing
    plan = plan_query(
        "pianoforte recital",
        bank,
        encode=encoder.encode,
        descriptor_vectors=index.descriptor_vectors,
        multilingual=True,
    )
    assert plan.matches and plan.matches[0].via in ("phrase", "text")
    assert any(m.descriptor_id == "instruments.piano" for m in plan.matches)


def test_unreadable_queries_are_user_errors(bank) -> None:
    with pytest.raises(UserError, match="empty"):
        plan_query("  ", bank)
    with pytest.raises(UserError, match="matches a descriptor"):
        plan_query("xyzzy", bank)
    # Chinese leftovers are not embedded by an English-only encoder.
    plan = plan_query(
        "钢琴 量子",
        bank,
        encode=lambda t: np.zeros((1, 4)),
        descriptor_vectors=np.zeros((len(bank), 4)),
    )
    assert [m.descriptor_id for m in plan.matches] == ["instruments.piano"]
    assert plan.unmatched == "量子"


def _items() -> list[SearchItem]:
    rng = np.random.default_rng(0)
    base = rng.standard_normal(8).astype(np.float32)
    return [
        SearchItem(
            "a", "Piano nocturne", {"instruments.piano": 0.9, "mood.calm": 0.8}, base, "musicnn"
        ),
        SearchItem(
            "b", "Rock anthem", {"instruments.piano": 0.1, "genre.rock": 0.9}, -base, "musicnn"
        ),
        SearchItem(
            "c",
            "Piano rag",
            {"instruments.piano": 0.8, "mood.calm": 0.1},
            base + 0.1 * rng.standard_normal(8).astype(np.float32),
            "musicnn",
        ),
        SearchItem("d", "Other model", {}, base, "clap"),
    ]


def test_rank_text_explains_its_hits(bank) -> None:
    hits = rank_text(plan_query("calm piano", bank), _items())
    assert [h.key for h in hits[:3]] == ["a", "c", "b"]
    assert hits[0].matched[0].confidence == 0.9
    assert {m.label for m in hits[0].matched} == {"piano", "calm"}


def test_rank_text_blends_a_joint_query_embedding(bank) -> None:
    items = _items()
    query = items[1].embedding
    plain = rank_text(plan_query("piano", bank), items)
    joint = rank_text(plan_query("piano", bank), items, query_embedding=query, encoder="musicnn")
    assert plain[0].key == "a"
    assert [h.key for h in joint].index("b") < [h.key for h in plain].index("b")


def test_rank_similar_skips_itself_and_other_encoders() -> None:
    items = _items()
    hits = rank_similar(items[0].embedding, items, exclude="a", encoder="musicnn")
    assert [h.key for h in hits] == ["c", "b"]
    assert hits[0].score > 0.9 > hits[1].score


def _report_folder(root: Path, name: str, scores: dict[str, float], embedding) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    report = {
        "title": f"{name}.wav",
        "source": {"content_hash": name * 8},
        "semantic": {"encoder": {"name": "debug"}, "scores": scores},
    }
    (folder / "report.json").write_text(json.dumps(report), encoding="utf-8")
    if embedding is not None:
        np.savez(
            folder / "embeddings.npz",
            embedding=np.asarray(embedding, np.float32),
            encoder=np.array("debug"),
        )
    return folder


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    root = tmp_path / "reports"
    _report_folder(root, "nocturne", {"instruments.piano": 0.9, "mood.calm": 0.7}, [1, 0, 0])
    _report_folder(root, "anthem", {"genre.rock": 0.9, "instruments.piano": 0.2}, [0, 1, 0])
    _report_folder(root, "etude", {"instruments.piano": 0.6}, [0.9, 0.1, 0])
    (root / "no-semantic").mkdir()
    (root / "no-semantic" / "report.json").write_text('{"title": "x"}')
    (root / "broken").mkdir()
    (root / "broken" / "report.json").write_text("{not json")
    return root


def test_items_from_report_folders(reports: Path) -> None:
    items = {i.title: i for i in items_from_reports(reports)}
    assert set(items) == {"nocturne.wav", "anthem.wav", "etude.wav"}
    assert items["etude.wav"].embedding.shape == (3,) and items["etude.wav"].encoder == "debug"


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("search")(search)
    app.command("similar")(similar)
    return app


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYMUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("POLYMUSE_TEXT_ENCODER", "hashing")
    monkeypatch.setenv("POLYMUSE_AUDIO_ENCODER", "debug")
    monkeypatch.setenv("POLYMUSE_DEVICE", "cpu")
    monkeypatch.chdir(tmp_path)


def test_search_command_over_report_folders(reports: Path, env: None) -> None:
    result = CliRunner().invoke(
        _cli(), ["search", "安静的钢琴", "--source", "reports", "--reports", str(reports), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [h["title"] for h in data["hits"]][:2] == ["nocturne.wav", "etude.wav"]
    assert {m["descriptor_id"] for m in data["plan"]["matches"]} == {
        "mood.calm",
        "instruments.piano",
    }


def test_similar_command_by_report_folder(reports: Path, env: None) -> None:
    result = CliRunner().invoke(
        _cli(),
        [
            "similar",
            str(reports / "nocturne"),
            "--source",
            "reports",
            "--reports",
            str(reports),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [h["title"] for h in data["hits"]] == ["etude.wav", "anthem.wav"]


def test_similar_command_encodes_an_audio_file(reports: Path, env: None, song_wav: Path) -> None:
    result = CliRunner().invoke(
        _cli(), ["similar", str(song_wav), "--source", "reports", "--reports", str(reports)]
    )
    # The debug encoder gives 16-d embeddings, the fake reports 3-d ones: nothing compares.
    assert result.exit_code == 0, result.output
    assert "songs like" in result.output


def test_search_without_songs_is_a_user_error(tmp_path: Path, env: None) -> None:
    result = CliRunner().invoke(
        _cli(), ["search", "piano", "--source", "reports", "--reports", str(tmp_path / "none")]
    )
    assert isinstance(result.exception, UserError)
