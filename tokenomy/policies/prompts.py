"""Prompt templates: one file per role, swappable per scenario.

A template is plain text with ``${placeholders}`` (``string.Template``, so JSON braces in a
template need no escaping): ``${persona}``, ``${policy_text}``, ``${schema}`` (the Decision's JSON
schema) and ``${role}``. The observation is not part of the template: the engine always appends
it as the final user message, in a fenced JSON block, so a swapped prompt cannot lose it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from pydantic import BaseModel

__all__ = ["PLACEHOLDERS", "PromptError", "PromptTemplate", "bundled_prompt_path", "load_prompt", "user_message"]

PLACEHOLDERS = ("persona", "policy_text", "schema", "role")


class PromptError(ValueError):
    """A prompt template that cannot be used; names the file and the problem."""


def bundled_prompt_path(name: str) -> Path:
    return Path(str(resources.files("tokenomy.agents").joinpath("prompts", f"{name}.md")))


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    path: Path
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def render(self, *, decision: type[BaseModel], persona: str = "", policy_text: str = "") -> str:
        schema = json.dumps(decision.model_json_schema(), separators=(",", ":"))
        return Template(self.text).substitute(persona=persona, policy_text=policy_text, schema=schema, role=self.name)


def load_prompt(name: str, override: str | None = None) -> PromptTemplate:
    """The bundled template for ``name``, or the user's file; checked for unknown placeholders."""
    path = Path(override).expanduser().resolve() if override else bundled_prompt_path(name)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise PromptError(f"{path}: cannot read prompt template ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise PromptError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save it as UTF-8") from None
    if not text.strip():  # a model asked with no instructions answers anything, and the run would not say why
        raise PromptError(f"{path}: the prompt template is empty; write the role's instructions in it")
    tmpl = Template(text)
    bad = [m for m in tmpl.get_identifiers() if m not in PLACEHOLDERS]
    if bad or not tmpl.is_valid():
        what = f"unknown placeholder(s) {', '.join('${' + b + '}' for b in bad)}" if bad else "a stray '$'"
        raise PromptError(f"{path}: {what}; allowed: {', '.join('${' + p + '}' for p in PLACEHOLDERS)} ($$ for $)")
    return PromptTemplate(name, path, text)


def user_message(round_no: int, observation: BaseModel, decision: type[BaseModel]) -> str:
    """The final user message: the observation as fenced JSON, and what to answer with."""
    obs = observation.model_dump_json(indent=None)
    return (
        f"Round {round_no}. Your observation:\n```json\n{obs}\n```\nReply with a JSON object for {decision.__name__}."
    )
