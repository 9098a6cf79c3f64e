"""Loading Hugging Face models from local folders only, with errors that say what is wrong."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from polymuse.errors import ModelUnavailableError

INSTALL = "pip install transformers==5.23.0"


def load_pretrained(cls: Any, folder: Path, what: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained(folder)` with no hub access; failures become ModelUnavailableError."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not folder.is_dir():
        raise ModelUnavailableError(f"{what}: folder {folder} does not exist")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        return cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except ImportError as exc:
        raise ModelUnavailableError(
            f"{what}: a package is missing ({exc}); run `{INSTALL}`"
        ) from exc
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelUnavailableError(f"{what}: cannot load from {folder}: {exc}") from exc


def features_tensor(output: Any) -> np.ndarray:
    """A `get_*_features` result as numpy: transformers 5 returns a model output whose
    `pooler_output` holds the projected features; earlier versions returned the tensor."""
    tensor = getattr(output, "pooler_output", output)
    return tensor.detach().float().cpu().numpy()
