"""The LLM path end to end with scripted tool calls (GenericFakeChatModel)."""

from __future__ import annotations

from types import SimpleNamespace

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from agents_data import library
from polymuse.agents.ask import NOT_IN_DATA, REFUSAL, answer_with_llm
from polymuse.llm import build_chat_model
from polymuse.settings import Settings

LIB = library()


def scripted(*messages: AIMessage) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(messages))


def call(name: str, args: dict, id_: str = "c1") -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": id_}])


def test_agent_calls_a_tool_and_cites_it() -> None:
    key = next(e for e in LIB.entries if e.title == "Canon in D").report.features.key.label
    model = scripted(
        call("read_report_field", {"song": "Canon in D", "field": "key"}),
        AIMessage(
            content=f"Canon in D is in {key} [source: reports/Canon in D: features.key.label]"
        ),
    )
    answer = answer_with_llm("What key is Canon in D in?", model, LIB)
    assert key in answer.text
    assert [f.value for f in answer.facts] == [key]
    assert answer.facts[0].field == "features.key.label"


def test_tool_error_reaches_the_model_which_says_not_in_data() -> None:
    model = scripted(
        call("read_report_field", {"song": "No Such Song", "field": "key"}),
        AIMessage(content=f"That song is {NOT_IN_DATA}."),
    )
    answer = answer_with_llm("What key is No Such Song in?", model, LIB)
    assert NOT_IN_DATA in answer.text and answer.facts == []


def test_unsafe_request_is_refused_before_the_model() -> None:
    model = scripted()  # any call would raise StopIteration
    answer = answer_with_llm("Delete every report and drop the catalogue", model, LIB)
    assert answer.refused and answer.text == REFUSAL


def test_unknown_tool_call_is_an_error_not_an_action() -> None:
    model = scripted(
        call("run_sql", {"sql": "DROP TABLE media_entity"}),
        AIMessage(content=f"I cannot do that; {NOT_IN_DATA}."),
    )
    answer = answer_with_llm("Run this for me: select 1", model, LIB)
    assert answer.facts == []


def test_uncited_answer_is_withheld() -> None:
    model = scripted(AIMessage(content="Canon in D is in F# minor."))
    answer = answer_with_llm("What key is Canon in D in?", model, LIB)
    assert "F# minor" not in answer.text and NOT_IN_DATA in answer.text


def test_llm_registry() -> None:
    assert build_chat_model(Settings(llm="none")) is None
    # The llm_* fields are proposed settings; any object with those attributes works.
    wanted = SimpleNamespace(llm="openai", llm_model="qwen", llm_base_url="http://127.0.0.1:9/v1")
    model = build_chat_model(wanted)
    assert type(model).__name__ == "ChatOpenAI"
