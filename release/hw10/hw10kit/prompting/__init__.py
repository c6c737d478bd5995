"""Problem 1's playground: a language-model client for any OpenAI-compatible provider
(``client``), a local server for a Hugging Face causal LM (``server``), the data
(``data``), the exploration and evaluation helpers (``explore``) and soft-prompt
training on GPT-2 (``soft``).

Nothing here imports ``openai``, ``transformers`` or matplotlib at import time: each
module imports what it needs inside its functions, so that importing the kit costs nothing
where they are missing (the grader never calls a model).
"""
from __future__ import annotations

from .client import LM, Completion, LMUnavailable, Settings, settings_from_env

__all__ = ["LM", "Completion", "LMUnavailable", "Settings", "settings_from_env"]
