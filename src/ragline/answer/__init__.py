"""The answer stage: cited answers, their verification, extractive answers, prompt templates."""

from __future__ import annotations

from ragline.answer.extractive import extractive_answer
from ragline.answer.prompts import (
    PromptError,
    PromptTemplate,
    SourceStyle,
    answer_prompt,
    family_for_model,
    format_sources,
    load_prompt,
)
from ragline.answer.types import (
    Answer,
    Citation,
    CitedSentence,
    ClaimCheck,
    ClaimVerdict,
    GeneratedAnswer,
    InvalidAnswerInput,
    JudgeLabel,
    JudgeVerdict,
    VerifyCitation,
    VerifyInput,
    parse_verify_input,
)
from ragline.answer.verify import (
    DEFAULT_THRESHOLDS,
    Judge,
    MemoEmbedder,
    Thresholds,
    abstain_if_unsupported,
    verify_answer,
    verify_claim,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Answer",
    "Citation",
    "CitedSentence",
    "ClaimCheck",
    "ClaimVerdict",
    "GeneratedAnswer",
    "InvalidAnswerInput",
    "Judge",
    "JudgeLabel",
    "JudgeVerdict",
    "MemoEmbedder",
    "PromptError",
    "PromptTemplate",
    "SourceStyle",
    "Thresholds",
    "VerifyCitation",
    "VerifyInput",
    "abstain_if_unsupported",
    "answer_prompt",
    "extractive_answer",
    "family_for_model",
    "format_sources",
    "load_prompt",
    "parse_verify_input",
    "verify_answer",
    "verify_claim",
]
