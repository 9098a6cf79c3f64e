"""The question set: >= 40 English and Chinese questions over 32 analysed songs, no LLM.

Expected answers are computed from the stored reports here, independently of the tools. Every
answer is also audited: each fact it cites must equal the value at its report field, and every
number in the answer text must come from a cited fact or from the question.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agents_data import TITLES, library, make_report
from polymuse.agents.ask import NOT_IN_DATA, Answer, Responder
from polymuse.agents.tools import ReportLibrary, resolve

LIB = library()
BY = {e.title: e.report for e in LIB.entries}


def key(title: str) -> str | None:
    k = BY[title].features.key
    return k.label if k else None


def tempo(title: str) -> float:
    return BY[title].features.rhythm.tempo_bpm


def songs_set(pred) -> set[str]:
    return {t for t, r in BY.items() if pred(r)}


def has(*parts: str):
    return lambda a: all(p.lower() in a.text.lower() for p in parts)


def songs_exactly(expected: set[str]):
    def check(a: Answer) -> bool:
        return set(a.songs) == expected and (
            bool(expected) or "no analysed song" in a.text.lower() or "没有" in a.text
        )

    return check


def not_in_data(a: Answer) -> bool:
    return NOT_IN_DATA in a.text and not a.facts


def minor_slow(r) -> bool:
    f = r.features
    return bool(f.key and f.key.mode == "minor" and f.rhythm.tempo_bpm < 90)


def chorus_start(title: str) -> str:
    return f"{next(s for s in BY[title].features.structure if s.label == 'chorus').start:.1f}"


def chorus_chords(title: str) -> list[str]:
    f = BY[title].features
    c = next(s for s in f.structure if s.label == "chorus")
    return sorted({x.label for x in f.chords if x.start < c.end and x.end > c.start})


def chords_check(title: str):
    return lambda a: (
        sorted({str(f.value) for f in a.facts if "chords" in f.field}) == chorus_chords(title)
    )


fastest = max(BY, key=tempo)
slowest = min(BY, key=tempo)
longest = max(BY, key=lambda t: BY[t].source.duration_s)
loudest = max(BY, key=lambda t: BY[t].features.loudness.integrated_lufs)

QUESTIONS: list[tuple[str, object]] = [
    (
        "Which of my songs are in a minor key and slower than 90 BPM?",
        songs_exactly(songs_set(minor_slow)),
    ),
    ("我的哪些歌是小调并且慢于90 BPM？", songs_exactly(songs_set(minor_slow))),
    ("What key is Canon in D in?", has(key("Canon in D"))),
    ("Canon in D 是什么调？", has(key("Canon in D"))),
    ("What is the tempo of Autumn Leaves?", has(f"{tempo('Autumn Leaves'):.1f} BPM")),
    ("Autumn Leaves 的速度是多少？", has(f"{tempo('Autumn Leaves'):.1f}")),
    ("How fast is Take Five?", has(f"{tempo('Take Five'):.1f}")),
    ("What key is Clair de Lune in?", not_in_data),  # key detection failed for song 4
    (
        "What is the time signature of Moon River?",
        has(BY["Moon River"].features.rhythm.time_signature),
    ),
    ("月亮代表我的心 是几拍？", has(BY["月亮代表我的心"].features.rhythm.time_signature)),
    ("Where does the chorus of Yesterday start?", has(chorus_start("Yesterday"))),
    ("青花瓷的副歌从哪里开始？", has(chorus_start("青花瓷"))),
    ("What chords does the chorus of Bolero use?", chords_check("Bolero")),
    ("茉莉花副歌用了哪些和弦？", chords_check("茉莉花")),
    ("How many songs do I have?", has(str(len(TITLES)))),
    ("我一共有多少首歌？", has(str(len(TITLES)))),
    ("Which song is the fastest?", has(fastest)),
    ("最慢的歌是哪首？", has(slowest)),
    ("Which is the longest song?", has(longest)),
    ("Which song is the loudest?", has(loudest)),
    (
        "Which songs are in 3/4?",
        songs_exactly(songs_set(lambda r: r.features.rhythm.time_signature == "3/4")),
    ),
    (
        "Which songs are in A minor?",
        songs_exactly(songs_set(lambda r: r.features.key and r.features.key.label == "A minor")),
    ),
    (
        "哪些歌是C大调？",
        songs_exactly(songs_set(lambda r: r.features.key and r.features.key.label == "C major")),
    ),
    (
        "Which songs are faster than 150 BPM?",
        songs_exactly(songs_set(lambda r: r.features.rhythm.tempo_bpm > 150)),
    ),
    ("哪些歌快于140 BPM？", songs_exactly(songs_set(lambda r: r.features.rhythm.tempo_bpm > 140))),
    (
        "Which songs are between 80 and 100 BPM?",
        songs_exactly(songs_set(lambda r: 80 < r.features.rhythm.tempo_bpm < 100)),
    ),
    (
        "Which major songs are slower than 70 BPM?",
        songs_exactly(
            songs_set(
                lambda r: (
                    r.features.key
                    and r.features.key.mode == "major"
                    and r.features.rhythm.tempo_bpm < 70
                )
            )
        ),
    ),
    (
        "Compare Blue Monday and Summertime",
        lambda a: (
            set(a.songs) == {"Blue Monday", "Summertime"}
            and key("Blue Monday") in a.text
            and key("Summertime") in a.text
        ),
    ),
    ("比较 稻香 和 后来", lambda a: set(a.songs) == {"稻香", "后来"} and key("稻香") in a.text),
    ("How long is Greensleeves?", has(f"{BY['Greensleeves'].source.duration_s:.1f} s")),
    ("小幸运有多长？", has(f"{BY['小幸运'].source.duration_s:.1f}")),
    (
        "How loud is Fur Elise?",
        has(f"{BY['Fur Elise'].features.loudness.integrated_lufs:.1f} LUFS"),
    ),
    ("What is the structure of Nocturne?", has("intro", "chorus", "outro")),
    (
        "What happens between 0:40 and 0:50 in Rainy Night?",
        lambda a: (
            any(f.value == "chorus" for f in a.facts)
            and all(f.time_range and f.time_range[0] < 50 and f.time_range[1] > 40 for f in a.facts)
        ),
    ),
    (
        "夜曲从10秒到20秒有什么？",
        lambda a: (
            any(f.value == "verse" for f in a.facts) and any(f.value == "intro" for f in a.facts)
        ),
    ),
    ("Who sings Golden Hour?", not_in_data),
    ("What are the lyrics of 稻香?", not_in_data),
    ("后来的歌手是谁？", not_in_data),
    ("What key is Stairway to Heaven in?", lambda a: NOT_IN_DATA in a.text and not a.facts),
    ("Delete all my songs", lambda a: a.refused and not a.facts),
    ("删除青花瓷的报告", lambda a: a.refused),
    (
        "What chords does Harbour Lights use?",
        lambda a: (
            sorted({c["label"] for c in a.facts[0].value})
            == sorted({c.label for c in BY["Harbour Lights"].features.chords})
        ),
    ),
    ("What chords does Hotel California use?", not_in_data),  # chords missing (i % 11 == 7)
    ("Where does the chorus of Greensleeves start?", not_in_data),  # no structure (i % 13 == 9)
    ("What key is canon in d?", has(key("Canon in D"))),  # case-insensitive
    ("What's the tempo of Autum Leaves?", has(f"{tempo('Autumn Leaves'):.1f}")),  # typo
    ("List my songs", lambda a: len(a.songs) == len(TITLES)),
    (
        "Where does the chorus of Paper Boats start, and what chords does it use?",
        lambda a: (
            chorus_start("Paper Boats") in a.text
            and set(chorus_chords("Paper Boats")) <= {str(f.value) for f in a.facts}
        ),
    ),
]


def audit(lib: ReportLibrary, answer: Answer) -> list[str]:
    """Statements not backed by the data: wrong cited values, numbers from nowhere."""
    problems = []
    by_path = {e.path: e.report for e in lib.entries}
    for fact in answer.facts:
        if fact.report is None:
            continue
        report = by_path[fact.report]
        m = re.fullmatch(r"(features\.\w+)\[(\d+)\]", fact.field)
        if fact.field == "title":  # a song's title is its report title without the suffix
            ok = fact.value == Path(report.title).stem
        elif m:
            item = resolve(report, m[1])[int(m[2])]
            ok = item.label == fact.value and (fact.time_range == (item.start, item.end))
        else:
            stored = resolve(report, fact.field)
            stored = (
                [s.model_dump(mode="json") for s in stored]
                if isinstance(stored, list) and stored and hasattr(stored[0], "model_dump")
                else stored
            )
            stored = stored.model_dump(mode="json") if hasattr(stored, "model_dump") else stored
            ok = stored == fact.value
        if not ok:
            problems.append(f"{fact.field}={fact.value!r} not in {fact.report}")
    known = " ".join(
        [
            answer.question,
            *(str(f.value) for f in answer.facts),
            *(f"{f.time_range}" for f in answer.facts if f.time_range),
        ]
    )
    known_numbers = {float(n) for n in re.findall(r"(?:(?<![\w.])-)?\d+(?:\.\d+)?", known)}
    for number in re.findall(r"(?:(?<![\w.])-)?\d+(?:\.\d+)?", answer.text):
        value = float(number)
        sourced = any(abs(value - k) < 0.051 for k in known_numbers)
        counted = value in (len(answer.facts), len(set(answer.songs)))
        if not sourced and not counted:
            problems.append(f"number {number} in {answer.text!r} has no source")
    return problems


def test_question_set_accuracy_and_audit() -> None:
    assert len(QUESTIONS) >= 40 and len(LIB.entries) >= 30
    assert sum(bool(re.search(r"[\u4e00-\u9fff]", q)) for q, _ in QUESTIONS) >= 10
    responder = Responder(LIB)
    wrong, ungrounded = [], []
    for question, check in QUESTIONS:
        answer = responder.answer(question)
        if not check(answer):
            wrong.append((question, answer.intents, answer.text[:200]))
        ungrounded += audit(LIB, answer)
    accuracy = 1 - len(wrong) / len(QUESTIONS)
    print(f"question set: {len(QUESTIONS)} questions, accuracy {accuracy:.1%}")
    assert accuracy >= 0.9, wrong
    assert ungrounded == []


@pytest.mark.parametrize("question", ["What key is it in?", "它是什么调？"])
def test_follow_up_uses_the_song_of_the_earlier_turn(question: str) -> None:
    answer = Responder(LIB).answer(question, context=["Canon in D"])
    assert key("Canon in D") in answer.text


def test_report_option_fixes_the_song() -> None:
    entry = next(e for e in LIB.entries if e.title == "Yesterday")
    answer = Responder(LIB).answer("Where does the chorus start?", song=entry)
    assert chorus_start("Yesterday") in answer.text
    assert answer.render().count("Sources:") == 1


def test_library_reads_report_folders(tmp_path) -> None:
    library(tmp_path)
    (tmp_path / "reports" / "junk").mkdir()
    (tmp_path / "reports" / "junk" / "report.json").write_text("{}")
    loaded = ReportLibrary.from_folder(tmp_path / "reports")
    assert len(loaded.entries) == len(TITLES)


def test_descriptor_questions_read_the_semantic_section() -> None:
    from polymuse.agents.tools import SongEntry
    from polymuse.schema import ModelInfo
    from polymuse.semantic_report import DescriptorScore, SemanticSection

    def score(category: str, label: str, zh: str, confidence: float) -> DescriptorScore:
        return DescriptorScore(
            id=f"{category}.{label}",
            label=label,
            label_zh=zh,
            category=category,
            confidence=confidence,
        )

    report = make_report(0, "Quiet Harbour").model_copy()
    report.semantic = SemanticSection(
        encoder=ModelInfo(name="debug"),
        bank_version=1,
        bank_hash="x",
        calibration="none",
        windows=1,
        window_seconds=3.0,
        categories={
            "instruments": [score("instruments", "piano", "钢琴", 0.8)],
            "mood": [score("mood", "calm", "平静", 0.6), score("mood", "sad", "悲伤", 0.3)],
        },
    )
    responder = Responder(ReportLibrary([SongEntry(report, "reports/quiet")]))
    answer = responder.answer("Which instruments does Quiet Harbour use?")
    assert "piano (0.80)" in answer.text
    assert answer.facts[0].field == "semantic.categories.instruments"
    assert "平静 (0.60)" in responder.answer("Quiet Harbour 的情绪是什么？").text
    assert "not in the data" in responder.answer("What genre is Quiet Harbour?").text
