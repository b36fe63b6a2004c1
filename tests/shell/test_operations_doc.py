"""docs/operations.md against the code: its commands, options, config keys and metrics exist."""

from __future__ import annotations

import argparse
import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from aewatch.cli import _VERBS, _parser
from aewatch.config.schema import Config

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "operations.md").read_text()
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
COMMAND = re.compile(r"(?<![\w.-])aewatch ([a-z][a-z-]*)([^`\n#|;&]*)")
CONFIG_KEY = re.compile(r"\b(" + "|".join(Config.model_fields) + r")(?:\[\])?\.([a-z_]+)\b")


def _code() -> list[str]:
    """Every shell block and every inline code span of the page (not the sample output)."""
    blocks = [body for lang, body in FENCE.findall(DOC) if lang == "sh"]
    prose = FENCE.sub("", DOC)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for code in _code():
        for verb, tail in COMMAND.findall(code):
            words = tail.split()
            found.append((verb, [w.split("=")[0] for w in words if w.startswith("--")]))
    return found


def _options(verb: str) -> set[str]:
    parser = _parser(verb)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices[verb]._option_string_actions)


def test_the_page_shows_commands() -> None:
    verbs = {verb for verb, _ in _commands()}
    assert {"calibrate", "score", "evaluate", "train", "check-config", "run"} <= verbs


@pytest.mark.parametrize(("verb", "options"), _commands())
def test_every_command_and_option_exists(verb: str, options: list[str]) -> None:
    assert verb in _VERBS, f"`aewatch {verb}` is not a command"
    missing = set(options) - _options(verb)
    assert not missing, f"`aewatch {verb}` has no option {sorted(missing)}"


def test_every_config_key_exists() -> None:
    keys = {match for code in _code() for match in CONFIG_KEY.findall(code)}
    assert keys, "the page names no configuration key"
    for section, key in sorted(keys):
        model = _section_model(section)
        names = set(model.model_fields) | {f.alias for f in model.model_fields.values()}
        assert key in names, f"{section}.{key} is not a configuration key"


def test_every_metric_is_documented_in_metrics_md() -> None:
    metrics_doc = (ROOT / "docs" / "metrics.md").read_text()
    names = set(re.findall(r"\baewatch_[a-z_]+[a-z]\b", DOC))
    assert names
    assert not {n for n in names if f"`{n}`" not in metrics_doc}


def _section_model(section: str) -> type[BaseModel]:
    annotation = Config.model_fields[section].annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    raise AssertionError(f"no model for section {section}")


def test_every_lone_option_belongs_to_a_command() -> None:
    every = set().union(*(_options(verb) for verb in _VERBS))
    lone = {span for span in re.findall(r"`(--[a-z-]+)", DOC)}
    assert lone <= every, sorted(lone - every)


def test_every_link_points_at_a_heading() -> None:
    for target, anchor in re.findall(r"\]\(([\w.]*?)#([\w-]+)\)", DOC):
        page = DOC if not target else (ROOT / "docs" / target).read_text()
        assert anchor in _slugs(page), f"{target or 'operations.md'} has no heading #{anchor}"


def _slugs(page: str) -> set[str]:
    """GitHub's anchors for the page's headings."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
