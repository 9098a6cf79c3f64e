"""Process settings: `POLYMUSE_*` environment variables, then `polymuse.toml`, then defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _default_home() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "polymuse"


def _toml_files() -> list[Path]:
    """Config files, later ones winning: the home's `polymuse.toml`, then the working dir's."""
    home = Path(os.environ.get("POLYMUSE_HOME") or _default_home())
    explicit = os.environ.get("POLYMUSE_CONFIG")
    files = [home / "polymuse.toml", Path("polymuse.toml")]
    return [Path(explicit)] if explicit else files


class Settings(BaseSettings):
    """Everything a run can be configured with. Build once, in the CLI."""

    model_config = SettingsConfigDict(env_prefix="POLYMUSE_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="State: database, caches.")
    output_dir: Path = Field(Path("reports"), description="Where report folders are written.")
    device: Literal["cpu", "cuda", "auto"] = "auto"
    dsn: str | None = Field(None, description="External PostgreSQL DSN; default: embedded server.")

    separator: str = Field("dsp", description="Separator backend.")
    audio_encoder: str = Field("musicnn", description="Audio encoder backend.")
    text_encoder: str = Field("minilm", description="Text encoder backend.")
    llm: str = Field("none", description="Chat model: none | openai | ollama.")
    llm_model: str = Field("", description="Model name on the chat server.")
    llm_base_url: str | None = Field(None, description="OpenAI-compatible base URL (vLLM, ...).")
    llm_api_key: SecretStr | None = Field(None, description="API key; never printed.")
    llm_timeout_s: float = 60.0
    llm_max_retries: int = 2

    clap_dir: Path | None = Field(None, description="Local CLAP model folder (transformers).")
    clamp3_dir: Path | None = Field(None, description="Local CLaMP 3 folder (*.pth + encoders).")
    mert_dir: Path | None = Field(None, description="Local MERT model folder.")
    muq_dir: Path | None = Field(None, description="Local MuQ model folder.")
    text_encoder_dir: Path | None = Field(None, description="sentence-transformer folder.")
    semantic_max_windows: int = Field(16, description="Audio windows the reviewer encodes.")

    roformer_checkpoint: Path | None = Field(None, description="BS/Mel-RoFormer .ckpt (MSST/UVR).")
    roformer_config: Path | None = Field(None, description="Its YAML; default: checkpoint .yaml.")
    demucs_repo: Path | None = Field(None, description="Folder of Demucs .th files and bag .yaml.")
    demucs_model: str = Field("htdemucs", description="Demucs model or bag name in demucs_repo.")
    stem_subtype: Literal["PCM_16", "PCM_24", "FLOAT"] = Field("PCM_16", description="Stem WAVs.")

    analysis_sample_rate: int = Field(44100, description="Rate the MIR models run at.")

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    def resolved_device(self) -> str:
        """`auto` becomes `cuda` when a GPU is visible, else `cpu`."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_toml_files())
        return (init_settings, env_settings, toml)
