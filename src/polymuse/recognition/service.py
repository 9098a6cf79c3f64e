"""Recognition against the catalogue database: what the CLI and the graph node call.

Short clips are identified whole. Files longer than `WHOLE_FILE_S` are identified from a few
excerpts (the best-supported answer wins), which keeps the look-up small for a full song;
`identify --timeline` covers a long recording window by window instead. The exact lane
answers first; `second_opinion` then asks the semantic lane (when the catalogue has window
embeddings of the configured encoder) about the same audio and fuses the two.
"""

from __future__ import annotations

import numpy as np

from polymuse.recognition.models import ChromaprintInfo, Recognition, SongMatch
from polymuse.recognition.postgres import PostgresIndex
from polymuse.recognition.recognizer import Recognizer
from polymuse.recognition.semantic import LoadAudio, SemanticLane, fuse
from polymuse.settings import Settings
from polymuse.store import Store
from polymuse.tools import chromaprint

WHOLE_FILE_S = 12.0
"""Files up to this long are identified whole; the confidence is fitted on clips of 3 to 10 s."""
EXCERPT_S = 10.0
EXCERPTS = 3


def excerpt_starts(duration_s: float) -> list[float]:
    """Where the excerpts of a long file start: spread over its middle, avoiding the ends."""
    if duration_s <= WHOLE_FILE_S:
        return []
    span = duration_s - EXCERPT_S
    return [round(span * (i + 1) / (EXCERPTS + 1), 3) for i in range(EXCERPTS)]


def identify_file(
    recognizer: Recognizer, audio: np.ndarray, sample_rate: int
) -> tuple[Recognition, list[float]]:
    """The answer for a whole file (mono), and the excerpt starts used (empty: whole file).

    An excerpt's answer is given in the file's time: its matched span is where it lies in the
    file, and its reference offset is where the file's first sample lies in the reference.
    """
    starts = excerpt_starts(len(audio) / sample_rate)
    if not starts:
        return recognizer.identify(audio, sample_rate), []
    answers = [
        _in_file_time(
            recognizer.identify(
                audio[int(s * sample_rate) : int((s + EXCERPT_S) * sample_rate)], sample_rate
            ),
            s,
        )
        for s in starts
    ]

    def strength(answer: Recognition) -> tuple[int, float]:
        best = answer.best
        return (answer.status == "match", best.confidence if best else 0.0)

    return max(answers, key=strength), starts


def _in_file_time(answer: Recognition, start_s: float) -> Recognition:
    """An excerpt's answer with query times counted from the file's start, not the excerpt's."""

    def shift(m: SongMatch) -> SongMatch:
        return m.model_copy(
            update={
                "query_start_s": round(m.query_start_s + start_s, 3),
                "query_end_s": round(m.query_end_s + start_s, 3),
                "reference_offset_s": round(m.reference_offset_s - m.tempo_ratio * start_s, 3),
            }
        )

    return answer.model_copy(
        update={
            "match": shift(answer.match) if answer.match else None,
            "alternatives": [shift(m) for m in answer.alternatives],
        }
    )


def confirm_on_stem(
    recognizer: Recognizer, mix: Recognition, stem: np.ndarray, sample_rate: int
) -> Recognition:
    """The answer for a stem (the instrumental: mix minus vocals) of a file whose mix was not
    recognised; it may only confirm the mix's own best candidate.

    A voice over a catalogued backing track leaves held notes the reference does not explain,
    and the mix is then rejected though ranked right; without the voice the backing matches.
    Accepting the stem's match only when the mix ranked the same song first keeps the second
    look from giving an unknown song a second chance at any other song. The stem's answer is
    returned as it is when it confirms, else demoted to `unknown`.
    """
    answer, _ = identify_file(recognizer, stem, sample_rate)
    best = mix.best
    if answer.match is None or (best is not None and answer.match.song_id == best.song_id):
        return answer
    alternatives = [answer.match, *answer.alternatives][: recognizer.alternatives]
    return answer.model_copy(
        update={
            "status": "unknown",
            "match": None,
            "alternatives": alternatives,
            "decided_by": "none",
        }
    )


def second_opinion(
    exact: Recognition, lane: SemanticLane | None, load: LoadAudio, *, duration_s: float
) -> Recognition:
    """`exact` fused with the semantic lane's opinion of the same file (`fuse`).

    The lane hears the whole file when it is short, else the excerpts `identify_file` uses.
    Without a lane (`--lane exact`) the exact answer is returned as it is.

    Args:
        exact: The exact lane's answer.
        lane: The semantic lane, or None.
        load: The file, mono, at the rate asked (the encoder's, not the fingerprint's).
        duration_s: The file's length.
    """
    if lane is None:
        return exact
    spans = [(s, s + EXCERPT_S) for s in excerpt_starts(duration_s)] or None
    return fuse(exact, lane.opinion(load, spans=spans))


def chromaprint_info(store: Store, audio: np.ndarray, sample_rate: int) -> ChromaprintInfo | None:
    """The file's Chromaprint and the catalogue song with the most similar stored one."""
    version = chromaprint.fpcalc_version()
    if version is None:
        return None
    items = chromaprint.fingerprint(audio, sample_rate=sample_rate)
    info = ChromaprintInfo(fpcalc_version=version, items=len(items))
    if len(items) < chromaprint.MIN_ITEMS:
        return info
    probe = np.unique(items)[:512].tolist()
    duration = len(audio) / sample_rate
    slack = max(7.0, 0.07 * duration)
    with store.connection("comparing Chromaprints") as conn:
        rows = conn.execute(
            "SELECT c.entity_id, e.title, c.fingerprint FROM chromaprint c "
            "JOIN media_entity e ON e.entity_id = c.entity_id "
            "WHERE c.fingerprint && %(probe)s::integer[] "
            "AND c.duration_s BETWEEN %(lo)s AND %(hi)s LIMIT 50",
            {"probe": probe, "lo": duration - slack, "hi": duration + slack},
        ).fetchall()
    best = None
    for song_id, title, stored in rows:
        score = chromaprint.similarity(items, np.asarray(stored, dtype=np.int32))
        if best is None or score > best[2]:
            best = (int(song_id), str(title), score)
    if best is not None and best[2] >= chromaprint.MATCH_SIMILARITY:
        info = info.model_copy(
            update={
                "duplicate_song_id": best[0],
                "duplicate_title": best[1],
                "similarity": round(best[2], 4),
            }
        )
    return info


def recognizer_for(store: Store) -> Recognizer:
    """A recognizer over the catalogue's postings with the shipped calibration."""
    return Recognizer(PostgresIndex(store))


def semantic_lane(settings: Settings, store: Store) -> SemanticLane:
    """The semantic lane for the configured audio encoder; check `unavailable` (for `doctor`).

    Cheap: reads which vector tables hold window embeddings; the encoder loads on first use.
    """
    return SemanticLane.open(settings, store)
