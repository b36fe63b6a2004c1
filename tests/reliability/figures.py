"""What each reliability test measured, for the table in docs/operations.md.

``record`` prints a test's figures (``pytest -s`` shows them) and, where
``AEWATCH_RELIABILITY_FIGURES`` names a file, appends them to it as one JSON line;
``python -m tests.reliability.figures FILE`` prints the Markdown table of such a file
(``make reliability`` writes one and prints its table).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

FIGURES_ENV = "AEWATCH_RELIABILITY_FIGURES"


def record(case: str, outcome: str, **figures: int | float | str) -> None:
    """Keep one test's ``figures`` under ``case`` with its ``outcome`` in words."""
    line = {"case": case, "outcome": outcome, **figures}
    print(f"\nreliability: {json.dumps(line)}")
    target = os.environ.get(FIGURES_ENV)
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


def table(lines: list[dict[str, int | float | str]]) -> str:
    """Markdown: one row per recorded case, its figures as ``name value`` pairs.

    >>> print(table([{"case": "a", "outcome": "ok", "lost": 0, "rows": 1200}]))
    | case | measured | outcome |
    |---|---|---|
    | a | lost 0, rows 1 200 | ok |
    """
    rows = ["| case | measured | outcome |", "|---|---|---|"]
    for line in lines:
        figures = ", ".join(
            f"{name.replace('_', ' ')} {_number(value)}"
            for name, value in line.items()
            if name not in ("case", "outcome")
        )
        rows.append(f"| {line['case']} | {figures} | {line['outcome']} |")
    return "\n".join(rows)


def _number(value: int | float | str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    return f"{value:.3g}"


if __name__ == "__main__":
    path = Path(sys.argv[1])
    print(table([json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]))
