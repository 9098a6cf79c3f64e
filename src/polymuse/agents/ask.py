"""Answer questions about the analysed songs, grounded in stored facts.

Without a chat model, a deterministic router picks intents (keyword rules in English and
Chinese, then text-encoder similarity to example questions), extracts slots (songs by fuzzy
title, keys, tempo ranges, metres, sections, time ranges) and writes each answer from a
template over the facts the tools returned. A fact that is missing is reported as "not in the
data"; nothing is guessed. With a chat model, a tool-calling LangGraph agent uses the same
tools and must cite them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from polymuse.agents.tools import (
    Fact,
    ReportLibrary,
    SongEntry,
    ToolError,
    compare,
    evidence,
    extreme,
    list_reports,
    read_field,
    section,
    songs_in_text,
    songs_where,
)

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from polymuse.tools.encoders.text import TextEncoder

NOT_IN_DATA = "not in the data"
REFUSAL = "I can only read the analysed data; changing or deleting it is not something I do here."


class Answer(BaseModel):
    """A reply with the facts it states and their sources."""

    question: str
    text: str
    intents: list[str] = Field(default_factory=list)
    facts: list[Fact] = Field(default_factory=list)
    refused: bool = False
    songs: list[str] = Field(default_factory=list, description="songs the answer is about")

    def render(self) -> str:
        """The answer followed by its numbered sources."""
        lines = [self.text]
        sources = list(dict.fromkeys(f.cite() for f in self.facts))
        if sources:
            lines.append("Sources:")
            lines += [f"  [{i}] {s}" for i, s in enumerate(sources, 1)]
        return "\n".join(lines)


# -- slots ----------------------------------------------------------------------------------

SECTIONS = {
    "chorus": ("chorus", "refrain", "副歌", "高潮"),
    "verse": ("verse", "主歌"),
    "intro": ("intro", "前奏"),
    "outro": ("outro", "尾奏", "结尾"),
    "bridge": ("bridge", "桥段"),
    "solo": ("solo", "间奏", "独奏"),
}
_NOTE = r"([A-Ga-g])\s*(#|♯|b|♭|sharp|flat|升|降)?"
_KEY_EN = re.compile(rf"\b{_NOTE}\s*(major|minor|maj|min)\b", re.I)
_KEY_ZH = re.compile(r"(升|降)?\s*([A-Ga-g])\s*(#|♯|b|♭)?\s*(大调|小调)")
_TIME = r"(\d+:\d{1,2}(?:\.\d+)?|\d+(?:\.\d+)?)\s*(?:s|sec|seconds|秒)?"
_RANGE = re.compile(rf"(?:between|from|从)?\s*{_TIME}\s*(?:and|to|until|-|–|到|至)\s*{_TIME}", re.I)
_BPM = r"(\d+(?:\.\d+)?)\s*(?:bpm)?"
_SLOWER = re.compile(rf"(?:slower than|under|below|less than|慢于|低于|小于|不到)\s*{_BPM}", re.I)
_FASTER = re.compile(rf"(?:faster than|over|above|more than|快于|高于|大于|超过)\s*{_BPM}", re.I)
_BPM_RANGE = re.compile(
    r"(\d+(?:\.\d+)?)\s*(?:bpm)?\s*(?:-|–|to|and|到|至)\s*(\d+(?:\.\d+)?)\s*bpm", re.I
)
_SIGNATURE = re.compile(r"\b([2-9]|12)\s*/\s*(4|8)\b")


@dataclass
class Slots:
    """What the question names besides its intent."""

    songs: list[SongEntry] = field(default_factory=list)
    mode: str | None = None
    tonic: str | None = None
    tempo_min: float | None = None
    tempo_max: float | None = None
    time_signature: str | None = None
    section: str | None = None
    time_range: tuple[float, float] | None = None

    @property
    def filters(self) -> bool:
        return any(
            v is not None
            for v in (self.mode, self.tonic, self.tempo_min, self.tempo_max, self.time_signature)
        )


def _seconds(text: str) -> float:
    if ":" in text:
        minutes, seconds = text.split(":", 1)
        return int(minutes) * 60 + float(seconds)
    return float(text)


def _tonic(letter: str, accidental: str | None) -> str:
    sign = {"#": "#", "♯": "#", "sharp": "#", "升": "#", "b": "b", "♭": "b", "flat": "b", "降": "b"}
    return letter.upper() + sign.get((accidental or "").lower(), "")


def extract_slots(question: str, library: ReportLibrary) -> Slots:
    """Songs, key, tempo range, metre, section and time range named in a question."""
    q = question
    slots = Slots(songs=songs_in_text(library, q))
    # Song titles may contain numbers and words ("Take Five"); read the rest without them.
    rest = q
    for entry in slots.songs:
        rest = re.sub(re.escape(entry.title), " ", rest, flags=re.I)
    low = rest.lower()
    if m := re.search(r"\ban? (minor|major) key\b", low):
        slots.mode = m[1]
    elif m := _KEY_ZH.search(rest):
        slots.tonic = _tonic(m[2], m[1] or m[3])
        slots.mode = "major" if m[4] == "大调" else "minor"
    elif m := _KEY_EN.search(rest):
        slots.tonic = _tonic(m[1], m[2])
        slots.mode = "minor" if m[3].lower().startswith("min") else "major"
    elif re.search(r"\bminor\b|小调", low):
        slots.mode = "minor"
    elif re.search(r"\bmajor\b|大调", low):
        slots.mode = "major"
    if m := _BPM_RANGE.search(rest):
        slots.tempo_min, slots.tempo_max = sorted((float(m[1]), float(m[2])))
    else:
        if m := _SLOWER.search(rest):
            slots.tempo_max = float(m[1])
        if m := _FASTER.search(rest):
            slots.tempo_min = float(m[1])
    if m := _SIGNATURE.search(rest):
        slots.time_signature = f"{m[1]}/{m[2]}"
    elif re.search(r"\bwaltz|三拍子", low):
        slots.time_signature = "3/4"
    for name, words in SECTIONS.items():
        if any(w in low for w in words):
            slots.section = name
            break
    m = _RANGE.search(rest) if slots.tempo_min is None and slots.tempo_max is None else None
    if m and (re.search(r"\d+\s*(?:s|sec|seconds|秒)\b|\d:\d|秒", m[0]) or "between" in low):
        start, end = _seconds(m[1]), _seconds(m[2])
        if end > start:
            slots.time_range = (start, end)
    return slots


# -- intents --------------------------------------------------------------------------------

RULES: dict[str, tuple[str, ...]] = {
    "unsafe": (
        r"\b(delete|drop|remove|truncate|update|insert|wipe|erase)\b",
        "删除",
        "清空",
        "修改数据",
        r"\bsql\b",
    ),
    "unsupported": (
        r"\blyric",
        r"\bsing(er|s)?\b",
        r"\bwho (wrote|composed|sang|played)",
        r"\breleased?\b",
        r"\bcomposer",
        "歌词",
        "歌手",
        "谁唱",
        "作曲",
        "发行",
    ),
    "count": (r"\bhow many\b", "多少首", "几首", r"\bnumber of songs"),
    "extreme": (
        r"\b(fastest|slowest|loudest|quietest|longest|shortest)\b",
        "最快",
        "最慢",
        "最响",
        "最安静",
        "最长",
        "最短",
    ),
    "compare": (
        r"\bcompare\b",
        r"\bdifference",
        r"\bversus\b",
        r"\bvs\.?\b",
        "比较",
        "对比",
        "区别",
        "不同",
    ),
    "section": (r"\b(start|starts|begin|begins|when|where)\b", "开始", "从哪", "什么时候", "在哪"),
    "chords": (r"\bchords?\b", r"\bharmony\b", r"\bprogression", "和弦", "和声"),
    "key": (r"\bkey\b", r"\btonality\b", "什么调", "哪个调", "调性", r"调是"),
    "tempo": (r"\btempo\b", r"\bbpm\b", r"\bhow fast\b", r"\bspeed\b", "速度", "多快", "节奏快"),
    "time_signature": (r"\btime signature\b", r"\bmeter\b", r"\bmetre\b", "拍号", "几拍"),
    "structure": (
        r"\bstructure\b",
        r"\bform\b",
        r"\bsections\b",
        r"\bparts\b",
        "结构",
        "曲式",
        "段落",
    ),
    "duration": (r"\bhow long\b", r"\bduration\b", r"\blength\b", "时长", "多长", "多久"),
    "loudness": (r"\bloud(ness)?\b", r"\blufs\b", r"\bvolume\b", "响度", "音量", "多响"),
    "instruments": (r"\binstruments?\b", r"\bplayed on\b", "乐器", "什么乐器"),
    "mood": (r"\bmood\b", r"\bfeel(ing)?\b", r"\bemotion", "情绪", "心情", "氛围"),
    "genre": (r"\bgenres?\b", r"\bstyle\b", r"\bkind of music\b", "风格", "流派", "类型"),
    "texture": (r"\btexture\b", r"\btimbre\b", "质感", "音色"),
    "list": (
        r"\b(which|what) songs\b",
        r"\blist\b",
        r"\bshow me (all|my) songs\b",
        "哪些歌",
        "哪些曲",
        "有哪些",
        "列出",
        "哪几首",
    ),
}

EXAMPLES: dict[str, tuple[str, ...]] = {
    "key": ("what key is this song in", "这首歌是什么调"),
    "tempo": ("how fast is the song", "这首歌的速度是多少"),
    "chords": ("which chords are played", "用了哪些和弦"),
    "structure": ("how is the song built", "歌曲的结构是什么"),
    "duration": ("how long does it last", "这首歌有多长"),
    "loudness": ("how loud is it", "这首歌的响度"),
    "list": ("show my library", "我的歌曲库里有什么"),
}

_DESCRIPTOR_INTENTS = ("instruments", "mood", "genre", "texture")
_FIELD_INTENTS = (
    "key",
    "tempo",
    "time_signature",
    "chords",
    "structure",
    "duration",
    "loudness",
    *_DESCRIPTOR_INTENTS,
)


def route(question: str, slots: Slots, encoder: TextEncoder | None = None) -> list[str]:
    """The intents of a question, most specific first; ["unknown"] when nothing fits."""
    low = question.lower()
    # Titles may contain trigger words ("Blue Monday" has no trigger, "Time after Time" might).
    for entry in slots.songs:
        low = low.replace(entry.title.lower(), " ")
    hits = [name for name, patterns in RULES.items() if any(re.search(p, low) for p in patterns)]
    if "unsafe" in hits:
        return ["unsafe"]
    if "unsupported" in hits:
        return ["unsupported"]
    if "section" in hits and slots.section is None:
        hits.remove("section")
    if (
        "section" in hits
        and "chords" in hits
        and not re.search(
            r"\b(start|starts|begin|begins|when|where)\b|开始|从哪|什么时候|在哪", low
        )
    ):
        hits.remove("section")
    if slots.time_range and slots.songs and "compare" not in hits:
        return ["evidence"]
    if "compare" in hits or (len(slots.songs) >= 2 and not slots.filters):
        return ["compare"]
    if "extreme" in hits:
        return ["extreme"]
    if "count" in hits and not slots.songs:
        return ["count"]
    if slots.filters and not slots.songs:
        return ["filter"]
    fields = [h for h in hits if h in (*_FIELD_INTENTS, "section")]
    if fields:
        return fields
    if "list" in hits:
        return ["list"]
    if encoder is not None:
        return [_nearest_intent(question, encoder)]
    return ["unknown"]


def _nearest_intent(question: str, encoder: TextEncoder, *, threshold: float = 0.55) -> str:
    """The intent whose example questions are most similar to the question, if close enough."""
    names = [n for n, qs in EXAMPLES.items() for _ in qs]
    texts = [q for qs in EXAMPLES.values() for q in qs]
    vectors = encoder.encode([question, *texts])
    scores = vectors[1:] @ vectors[0]
    best = int(scores.argmax())
    return names[best] if float(scores[best]) >= threshold else "unknown"


# -- templates ------------------------------------------------------------------------------


def _zh(question: str) -> bool:
    return bool(re.search(r"[\u4e00-\u9fff]", question))


def _fmt(value: Any, field_name: str) -> str:
    if field_name.endswith("tempo_bpm"):
        return f"{value:.1f} BPM"
    if field_name.endswith("duration_s"):
        return f"{value:.1f} s"
    if field_name.endswith("integrated_lufs"):
        return f"{value:.1f} LUFS"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


_FIELD_NAMES = {
    "key": ("key", "调"),
    "tempo": ("tempo", "速度"),
    "time_signature": ("time signature", "拍号"),
    "duration": ("duration", "时长"),
    "loudness": ("integrated loudness", "综合响度"),
    "chords": ("chords", "和弦"),
    "structure": ("structure", "结构"),
    "instruments": ("most likely instruments", "最可能的乐器"),
    "mood": ("most likely moods", "最可能的情绪"),
    "genre": ("most likely genres", "最可能的风格"),
    "texture": ("texture", "质感"),
}


def _missing(zh: bool, what: str, song: str | None = None) -> str:
    if zh:
        return f"{song + '的' if song else ''}{what}：数据中没有（{NOT_IN_DATA}）。"
    return f"The {what}{' of ' + song if song else ''} is {NOT_IN_DATA}."


class Responder:
    """The deterministic question answerer over one library."""

    def __init__(self, library: ReportLibrary, *, encoder: TextEncoder | None = None) -> None:
        self.library = library
        self.encoder = encoder

    def answer(
        self, question: str, *, song: SongEntry | None = None, context: Sequence[str] = ()
    ) -> Answer:
        """Answer one question; `song` fixes the subject (`--report`), `context` holds the
        titles mentioned in earlier turns (for "it", "它")."""
        slots = extract_slots(question, self.library)
        if song is not None and not slots.songs:
            slots.songs = [song]
        intents = route(question, slots, self.encoder)
        if not slots.songs and context and intents[0] in (*_FIELD_INTENTS, "section", "evidence"):
            slots.songs = [e for e in self.library.entries if e.title == context[-1]][:1]
        unquoted = question
        for entry in slots.songs:  # a Chinese title does not make an English question Chinese
            unquoted = unquoted.replace(entry.title, " ")
        zh = _zh(unquoted)
        parts: list[str] = []
        facts: list[Fact] = []
        for intent in intents:
            try:
                text, found = self._one(intent, question, slots, zh)
            except ToolError as exc:
                text, found = f"{exc} ({NOT_IN_DATA})", []
            parts.append(text)
            facts += found
        return Answer(
            question=question,
            text=" ".join(parts),
            intents=intents,
            facts=facts,
            refused=intents == ["unsafe"],
            songs=list(dict.fromkeys(f.song for f in facts if f.song))
            or [e.title for e in slots.songs],
        )

    def _one(self, intent: str, question: str, slots: Slots, zh: bool) -> tuple[str, list[Fact]]:
        lib = self.library
        if intent == "unsafe":
            return (REFUSAL if not zh else "我只能读取分析数据，不会修改或删除它。"), []
        if intent in ("unsupported", "unknown"):
            if zh:
                return f"这个问题的答案不在分析数据里（{NOT_IN_DATA}）。", []
            return f"The analysed data does not answer this; it is {NOT_IN_DATA}.", []
        if intent == "count":
            facts = list_reports(lib)
            return (
                f"共有 {len(facts)} 首已分析的歌曲。"
                if zh
                else f"{len(facts)} songs have analysis reports."
            ), facts
        if intent == "list":
            facts = list_reports(lib)
            names = ", ".join(f.value for f in facts)
            return (f"已分析的歌曲：{names}。" if zh else f"Analysed songs: {names}."), facts
        if intent == "filter":
            return self._filter(slots, zh)
        if intent == "extreme":
            return self._extreme(question, zh)
        if intent == "compare":
            if len(slots.songs) < 2:
                return _missing(zh, "second song to compare"), []
            a, b = slots.songs[:2]
            facts = compare(lib, a.title, b.title)
            lines = []
            for entry in (a, b):
                own = [f for f in facts if f.song == entry.title]
                desc = ", ".join(_fmt(f.value, f.field) for f in own)
                lines.append(f"{entry.title}: {desc or NOT_IN_DATA}")
            return "; ".join(lines) + ".", facts
        if not slots.songs:
            return (
                f"请说明是哪首歌（{NOT_IN_DATA}）。"
                if zh
                else f"Which song? No analysed song is named in the question ({NOT_IN_DATA})."
            ), []
        entry = slots.songs[0]
        if intent == "evidence":
            assert slots.time_range is not None
            t0, t1 = slots.time_range
            facts = evidence(lib, entry.title, t0, t1)
            if not facts:
                return _missing(zh, f"analysis between {t0:g} and {t1:g} s", entry.title), []
            secs = [f for f in facts if "structure" in f.field]
            chords = [f for f in facts if "chords" in f.field]
            text = (
                f"{entry.title}, {t0:g}-{t1:g} s: section(s) "
                f"{', '.join(str(f.value) for f in secs) or NOT_IN_DATA}; chords "
                f"{' '.join(str(f.value) for f in chords) or NOT_IN_DATA}."
            )
            return text, facts
        if intent == "section":
            return self._section(entry, slots, zh)
        if intent == "chords" and (slots.section or slots.time_range):
            return self._section_chords(entry, slots, zh)
        fact = read_field(lib, entry.title, intent)
        en, zh_name = _FIELD_NAMES[intent]
        if fact.value in (None, []):
            return _missing(zh, zh_name if zh else en, entry.title), []
        if intent == "chords":
            value = " ".join(dict.fromkeys(c["label"] for c in fact.value))
        elif intent in _DESCRIPTOR_INTENTS:
            value = ", ".join(
                f"{d['label_zh'] if zh else d['label']} ({d['confidence']:.2f})"
                for d in fact.value[:3]
            )
        elif intent == "structure":
            value = " → ".join(f"{s['label']} ({s['start']:.1f} s)" for s in fact.value)
        else:
            value = _fmt(fact.value, fact.field)
        if zh:
            return f"{entry.title} 的{zh_name}是 {value}。", [fact]
        if intent in _DESCRIPTOR_INTENTS:
            return f"{entry.title}, {en}: {value}.", [fact]
        return f"The {en} of {entry.title} is {value}.", [fact]

    def _filter(self, slots: Slots, zh: bool) -> tuple[str, list[Fact]]:
        facts = songs_where(
            self.library,
            mode=slots.mode,
            tonic=slots.tonic,
            tempo_min=slots.tempo_min,
            tempo_max=slots.tempo_max,
            time_signature=slots.time_signature,
        )
        conditions = []
        if slots.mode:
            conditions.append(f"{slots.tonic + ' ' if slots.tonic else ''}{slots.mode}")
        if slots.tempo_min is not None:
            conditions.append(f"faster than {slots.tempo_min:g} BPM")
        if slots.tempo_max is not None:
            conditions.append(f"slower than {slots.tempo_max:g} BPM")
        if slots.time_signature:
            conditions.append(f"in {slots.time_signature}")
        what = ", ".join(conditions)
        songs = list(dict.fromkeys(f.song for f in facts))
        if not songs:
            return (
                f"没有符合条件（{what}）的已分析歌曲。" if zh else f"No analysed song is {what}."
            ), []
        details = []
        for song in songs:
            own = [f for f in facts if f.song == song and f.field != "title"]
            details.append(f"{song} ({', '.join(_fmt(f.value, f.field) for f in own)})")
        if zh:
            return f"符合条件（{what}）的歌曲共 {len(songs)} 首：{'；'.join(details)}。", facts
        return f"{len(songs)} song(s) are {what}: {'; '.join(details)}.", facts

    def _extreme(self, question: str, zh: bool) -> tuple[str, list[Fact]]:
        low = question.lower()
        table = [
            (("fastest", "最快"), "tempo", True, "fastest", "最快"),
            (("slowest", "最慢"), "tempo", False, "slowest", "最慢"),
            (("loudest", "最响"), "loudness", True, "loudest", "最响"),
            (("quietest", "最安静"), "loudness", False, "quietest", "最安静"),
            (("longest", "最长"), "duration", True, "longest", "最长"),
            (("shortest", "最短"), "duration", False, "shortest", "最短"),
        ]
        for words, field_name, highest, en, zh_word in table:
            if any(w in low for w in words):
                fact = extreme(self.library, field_name, highest=highest)
                if fact is None:
                    return _missing(zh, field_name), []
                value = _fmt(fact.value, fact.field)
                if zh:
                    return f"{zh_word}的歌曲是 {fact.song}（{value}）。", [fact]
                return f"The {en} song is {fact.song} ({value}).", [fact]
        return _missing(zh, "ranking"), []

    def _section(self, entry: SongEntry, slots: Slots, zh: bool) -> tuple[str, list[Fact]]:
        label = slots.section or ""
        facts = section(self.library, entry.title, label)
        if not facts:
            return _missing(zh, f"{label} section", entry.title), []
        first = facts[0]
        assert first.time_range is not None
        start, end = first.time_range
        if zh:
            return f"{entry.title} 的{label}从 {start:.1f} 秒开始（到 {end:.1f} 秒）。", [first]
        return f"The {label} of {entry.title} starts at {start:.1f} s (until {end:.1f} s).", [first]

    def _section_chords(self, entry: SongEntry, slots: Slots, zh: bool) -> tuple[str, list[Fact]]:
        cited: list[Fact] = []
        if slots.time_range:
            t0, t1 = slots.time_range
            where = f"{t0:g}-{t1:g} s"
        else:
            parts = section(self.library, entry.title, slots.section or "")
            if not parts:
                return _missing(zh, f"{slots.section} section", entry.title), []
            assert parts[0].time_range is not None
            t0, t1 = parts[0].time_range
            where = f"the {slots.section} ({t0:.1f}-{t1:.1f} s)"
            cited = [parts[0]]
        chords = [f for f in evidence(self.library, entry.title, t0, t1) if "chords" in f.field]
        if not chords:
            return _missing(zh, f"chords of {where}", entry.title), []
        names = " ".join(dict.fromkeys(str(f.value) for f in chords))
        if zh:
            return f"{entry.title} 在 {where} 的和弦是 {names}。", cited + chords
        return f"In {where}, {entry.title} uses the chords {names}.", cited + chords


# -- the LLM path ---------------------------------------------------------------------------

SYSTEM_PROMPT = (
    "You answer questions about the user's analysed songs. Use only the tools' results; every "
    "fact you state must come from a tool result, and you cite it as [source: <source>] with "
    "the `source` string the tool gave. If the tools do not give the answer, say it is "
    f"'{NOT_IN_DATA}'. Never change or delete data: you can only read. Answer in the "
    "language of the question."
)


def is_unsafe(question: str) -> bool:
    """Requests to change or delete data, or to run SQL: refused before any model sees them."""
    low = question.lower()
    return any(re.search(p, low) for p in RULES["unsafe"])


def build_agent_graph(model: BaseChatModel, tools: Sequence[Any]):
    """A tool-calling agent: model -> tools -> model ... until it answers (uncompiled)."""
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from polymuse.llm import translate_llm_errors

    try:
        bound = model.bind_tools(list(tools))
    except NotImplementedError:
        bound = model  # scripted test models emit tool calls without binding

    def agent(state: MessagesState) -> dict:
        from langchain_core.messages import SystemMessage

        with translate_llm_errors():
            reply = bound.invoke([SystemMessage(SYSTEM_PROMPT), *state["messages"]])
        return {"messages": [reply]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(list(tools), handle_tool_errors=True))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph


def answer_with_llm(
    question: str, model: BaseChatModel, library: ReportLibrary, *, store: Any = None
) -> Answer:
    """Run the agent; keep its answer only if it cites a tool result, else say so."""
    import json

    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from polymuse.agents.tools import langchain_tools

    if is_unsafe(question):
        return Answer(question=question, text=REFUSAL, intents=["unsafe"], refused=True)
    graph = build_agent_graph(model, langchain_tools(library, store)).compile()
    result = graph.invoke({"messages": [HumanMessage(question)]}, {"recursion_limit": 12})
    facts: list[Fact] = []
    errors: list[str] = []
    for message in result["messages"]:
        if isinstance(message, ToolMessage):
            if message.status == "error":
                errors.append(str(message.content))
                continue
            try:
                rows = json.loads(message.content)
            except (TypeError, ValueError):
                continue
            for row in rows:
                row.pop("source", None)
                facts.append(Fact.model_validate(row))
    final = result["messages"][-1]
    text = final.content if isinstance(final, AIMessage) else ""
    cited = bool(re.search(r"\[source:", str(text)))
    if not cited and NOT_IN_DATA not in str(text):
        text = f"The model's answer cited no source, so it is not shown ({NOT_IN_DATA})."
        facts = []
    return Answer(question=question, text=str(text), intents=["llm"], facts=facts)
