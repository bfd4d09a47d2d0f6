"""Model names that ask for speakers, as OpenAI's diarizing model's name does.

OpenAI selects diarization by model: ``gpt-4o-transcribe-diarize``. Here any model can
diarize, so ``<model>-diarize`` is ``<model>`` with speakers, and ``gpt-4o-transcribe-diarize``
itself (for clients written against OpenAI) is the default model with speakers. A configured
model of that name is always itself.
"""

from __future__ import annotations

from collections.abc import Collection

OPENAI_DIARIZE_MODEL = "gpt-4o-transcribe-diarize"
DIARIZE_SUFFIX = "-diarize"


def resolve(name: str, models: Collection[str], default: str) -> tuple[str, bool]:
    """The configured model a name means, and whether it asks for speakers."""
    if name in models:
        return name, False
    if name == OPENAI_DIARIZE_MODEL:
        return default, True
    if name.endswith(DIARIZE_SUFFIX):
        return name.removesuffix(DIARIZE_SUFFIX), True
    return name, False
