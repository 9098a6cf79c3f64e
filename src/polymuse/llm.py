"""Chat models: a registry chosen by settings, imported lazily, errors translated to LLMError.

- `none` (default): no model; `ask`, `chat`, `plan` and `--goal` use deterministic routing.
- `openai`: any OpenAI-compatible server (OpenAI, vLLM, llama.cpp's server, LM Studio) through
  `langchain-openai`'s `ChatOpenAI` with `llm_base_url`, `llm_model`, `llm_api_key`.
- `ollama`: a local Ollama server through `langchain-ollama`'s `ChatOllama`.

Both providers are optional extras: `pip install langchain-openai` / `langchain-ollama`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polymuse.errors import LLMError, ModelUnavailableError, UserError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 2


@dataclass(frozen=True)
class LLMConfig:
    """What a chat model is built from; read from settings with safe fallbacks."""

    provider: str = "none"
    model: str = ""
    base_url: str | None = None
    api_key: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_retries: int = DEFAULT_RETRIES
    temperature: float = 0.0

    @classmethod
    def from_settings(cls, settings: object) -> LLMConfig:
        """Fields `llm`, `llm_model`, `llm_base_url`, `llm_api_key`, `llm_timeout_s`,
        `llm_max_retries` (missing ones take the defaults; the key may come from
        `POLYMUSE_LLM_API_KEY` or `OPENAI_API_KEY`)."""
        key = getattr(settings, "llm_api_key", None)
        if hasattr(key, "get_secret_value"):
            key = key.get_secret_value()
        return cls(
            provider=str(getattr(settings, "llm", "none") or "none").lower(),
            model=str(getattr(settings, "llm_model", "") or ""),
            base_url=getattr(settings, "llm_base_url", None),
            api_key=key
            or os.environ.get("POLYMUSE_LLM_API_KEY")
            or os.environ.get("OPENAI_API_KEY"),
            timeout_s=float(getattr(settings, "llm_timeout_s", DEFAULT_TIMEOUT_S)),
            max_retries=int(getattr(settings, "llm_max_retries", DEFAULT_RETRIES)),
        )


def _openai(config: LLMConfig) -> BaseChatModel:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        raise ModelUnavailableError(
            "llm = openai needs the langchain-openai package: pip install langchain-openai"
        ) from None
    if not config.model:
        raise UserError("llm = openai needs a model name: set POLYMUSE_LLM_MODEL")
    return ChatOpenAI(
        model=config.model,
        base_url=config.base_url,
        # Local servers (vLLM, llama.cpp) accept any key; the SDK insists on one.
        api_key=config.api_key or "not-needed",
        timeout=config.timeout_s,
        max_retries=config.max_retries,
        temperature=config.temperature,
    )


def _ollama(config: LLMConfig) -> BaseChatModel:
    try:
        from langchain_ollama import ChatOllama
    except ImportError:
        raise ModelUnavailableError(
            "llm = ollama needs the langchain-ollama package: pip install langchain-ollama"
        ) from None
    if not config.model:
        raise UserError("llm = ollama needs a model name: set POLYMUSE_LLM_MODEL (e.g. qwen2.5)")
    kwargs: dict[str, Any] = {
        "model": config.model,
        "temperature": config.temperature,
        "client_kwargs": {"timeout": config.timeout_s},
    }
    if config.base_url:
        kwargs["base_url"] = config.base_url
    return ChatOllama(**kwargs)


LLMS: dict[str, Callable[[LLMConfig], BaseChatModel | None]] = {
    "none": lambda config: None,
    "openai": _openai,
    "ollama": _ollama,
}


def build_chat_model(settings: object) -> BaseChatModel | None:
    """The configured chat model, or None for `llm = none`."""
    config = LLMConfig.from_settings(settings)
    if config.provider not in LLMS:
        raise UserError(f"unknown llm {config.provider!r}; valid: {', '.join(LLMS)}")
    return LLMS[config.provider](config)


@contextmanager
def translate_llm_errors(doing: str = "asking the chat model") -> Iterator[None]:
    """Provider and network exceptions become `LLMError` naming what was being done."""
    try:
        yield
    except (LLMError, UserError, ModelUnavailableError):
        raise
    except TimeoutError as exc:
        raise LLMError(f"{doing}: timed out ({exc}); raise POLYMUSE_LLM_TIMEOUT_S") from None
    except Exception as exc:  # provider SDKs raise their own hierarchies
        text = str(exc)
        for secret in (os.environ.get("POLYMUSE_LLM_API_KEY"), os.environ.get("OPENAI_API_KEY")):
            if secret:
                text = text.replace(secret, "***")
        raise LLMError(f"{doing}: {type(exc).__name__}: {text}") from None
