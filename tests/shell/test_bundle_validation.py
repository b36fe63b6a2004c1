"""A bundle is untrusted input: every bad field is a clean refusal, never a traceback.

Each way a field can be wrong (period 0, hop 0, no channels, a window of 10^9 samples, an
infinite threshold, a list where an object belongs, a header nested 100 000 deep, a
header claiming more bytes than the file) is refused with a ``BundleError`` naming the
field and the fix, and every command that loads a bundle exits 2 with that line. A
Hypothesis property throws random files, mutated metadata and damaged bytes at the loader:
each one is a ``BundleError`` or a model that scores and decides windows.
"""

from __future__ import annotations

import copy
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aewatch.cli import main
from aewatch.daemon.fleet import ServedModel
from aewatch.errors import BundleError
from aewatch.model.bundle import ModelBundle
from aewatch.model.bundle_meta import MAX_HEADER_BYTES, MAX_JSON_DEPTH, MAX_WINDOW_VALUES

PROPERTY = settings(
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Trained:
    """A bundle trained with its channel checks on, its parts, and its history."""

    path: Path
    header: dict[str, Any]  # the safetensors header without the metadata
    meta: dict[str, Any]
    weights: bytes  # what follows the header
    history: Path
    folder: Path

    def write(self, name: str, meta: Any, header: dict[str, Any] | None = None) -> Path:
        """A copy with ``meta`` (JSON text, or a value to write as JSON) and ``header``'s
        tensor entries put in."""
        full = dict(self.header if header is None else header)
        full["__metadata__"] = {"aewatch": meta if isinstance(meta, str) else json.dumps(meta)}
        return self.write_raw(name, json.dumps(full).encode())

    def write_raw(self, name: str, header: bytes, *, claimed: int | None = None) -> Path:
        path = self.folder / name
        size = len(header) if claimed is None else claimed
        path.write_bytes(struct.pack("<Q", size) + header + self.weights)
        return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    folder = tmp_path_factory.mktemp("validation")
    history, model = folder / "history.csv", folder / "well.aew"
    simulate = ["simulate", "--scenario", "well", "--hours", "3", "--seed", "1"]
    assert main([*simulate, "--out", str(history)]) == 0
    train = ["train", "--data", str(history), "--out", str(model), "--name", "well"]
    assert main([*train, "--quiet", "--no-detectability"]) == 0
    raw = model.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = json.loads(header.pop("__metadata__")["aewatch"])
    assert meta["decision"]["checks"], "the property needs a bundle with its checks on"
    return Trained(model, header, meta, raw[8 + n :], history, folder)


def _set(meta: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(meta)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    node[last] = value
    return out


def _nested(depth: int) -> str:
    return "[" * depth + "0" + "]" * depth


# (what is wrong, how to make it, what the message must name)
REFUSALS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("period 0", lambda m: _set(m, "period_s", 0), r"period_s = 0 must be between"),
    ("period NaN", lambda m: _set(m, "period_s", math.nan), r"period_s = NaN must be a finite"),
    ("hop 0", lambda m: _set(m, "window.hop", 0), r"window\.hop = 0 must be between 1 and 10"),
    ("hop > window", lambda m: _set(m, "window.hop", 11), r"window\.hop = 11 must be between"),
    ("hop 1.5", lambda m: _set(m, "window.hop", 1.5), r"window\.hop = 1\.5 must be a whole"),
    ("no channels", lambda m: _set(m, "channels", []), r"channels = \[\] must be a list of at"),
    ("channel twice", lambda m: _set(m, "channels", ["a", "a", "b", "c"]), r"names a channel"),
    (
        "window of 10^9",
        lambda m: _set(m, "window.length", 10**9),
        rf"window\.length = 1000000000 must be between 1 and {MAX_WINDOW_VALUES}",
    ),
    (
        "window too big for its channels",
        lambda m: _set(m, "window.length", MAX_WINDOW_VALUES // 2),
        r"with 4 channels makes a window of 2097152 values",
    ),
    (
        "window the network does not take",
        lambda m: _set(m, "window.length", 12),
        r"window\.length = 12 differs from arch\.length = 10",
    ),
    (
        "infinite threshold",
        lambda m: _set(m, "threshold.value", math.inf),
        r"threshold\.value = Infinity must be a finite number; recalibrate",
    ),
    ("fpr 1", lambda m: _set(m, "threshold.fpr", 1.0), r"threshold\.fpr = 1\.0 must be between"),
    ("zero scale", lambda m: _set(m, "scaler.scale", [1, 0, 1, 1]), r"scaler\.scale = \[1, 0"),
    ("arch a list", lambda m: _set(m, "arch", [1, 2]), r"arch = \[1, 2\] must be a JSON object"),
    ("decision a list", lambda m: _set(m, "decision", []), r"decision = \[\] must be a JSON"),
    ("name a number", lambda m: _set(m, "name", 5), r"name = 5 must be a string"),
    ("metadata a list", lambda m: [m], r"its metadata is a JSON array, not an object"),
    (
        "a deep provenance",
        lambda m: json.dumps(_set(m, "provenance", "DEEP")).replace(
            '"DEEP"', "[" * 100_000 + "]" * 100_000
        ),
        rf"its metadata nests 100001 levels deep, more than {MAX_JSON_DEPTH}",
    ),
    (
        "a huge adaptation depth",
        lambda m: _set(m, "decision.adaptation.depth", 10**12),
        r"decision\.adaptation\.depth = 1000000000000 must be between 1 and 100000",
    ),
    (
        "checks on other channels",
        lambda m: _set(m, "decision.checks.shift_limit", [1.0]),
        r"decision = .* cannot be used \(ValueError: checks: shift_limit must hold 4",
    ),
    ("elbo without a vae", lambda m: _set(m, "score_kind", "elbo"), r"needs arch\.kind vae"),
]


@pytest.mark.parametrize(("case", "damage", "named"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_each_bad_field_is_refused_naming_it_and_the_fix(
    trained: Trained, case: str, damage: Callable[[dict[str, Any]], Any], named: str
) -> None:
    path = trained.write("bad.aew", damage(trained.meta))
    with pytest.raises(BundleError, match=named) as caught:
        ModelBundle.load(path)
    message = str(caught.value)
    assert str(path) in message, case
    assert "retrain" in message or "recalibrate" in message or "aewatch train" in message


def test_the_header_itself_is_checked(trained: Trained) -> None:
    good = json.dumps({**trained.header, "__metadata__": {"aewatch": json.dumps(trained.meta)}})
    claims_more = trained.write_raw("claims.aew", good.encode(), claimed=2**40)
    with pytest.raises(
        BundleError, match=rf"claims 1099511627776 bytes; .* 1 to {MAX_HEADER_BYTES}"
    ):
        ModelBundle.load(claims_more)
    truncated = trained.path.with_name("truncated.aew")
    truncated.write_bytes(trained.path.read_bytes()[:4000])
    with pytest.raises(BundleError, match=r"is truncated: its header claims \d+ bytes, the whole"):
        ModelBundle.load(truncated)
    deep = trained.write_raw("deep.aew", _nested(50_000).encode())
    with pytest.raises(BundleError, match=r"its header nests 50000 levels deep"):
        ModelBundle.load(deep)
    a_list = trained.write_raw("list.aew", b"[1, 2, 3]")
    with pytest.raises(BundleError, match=r"its header is a JSON array, not an object"):
        ModelBundle.load(a_list)
    bigger = {**trained.header, "mean": {"dtype": "F32", "shape": [10**9], "data_offsets": [0, 4]}}
    with pytest.raises(BundleError, match=r"weights 'mean' are F32 \[1000000000\] in the file"):
        ModelBundle.load(trained.write("bigger.aew", trained.meta, bigger))


def test_a_bundle_that_loads_still_loads(trained: Trained) -> None:
    """The checks refuse nothing a real training wrote (and the rewrite keeps it whole)."""
    bundle = ModelBundle.load(trained.write("same.aew", trained.meta))
    assert bundle.version == ModelBundle.load(trained.path).version


# -- every command that loads a bundle --------------------------------------------------


def _commands(model: Path, history: Path, folder: Path) -> dict[str, list[str]]:
    config = folder / "aewatch.yaml"
    config.write_text(
        "broker:\n  url: mqtt://127.0.0.1:1\n"
        "inputs:\n  - topic: t/{asset}/{channel}\n    payload: json\n"
        f"models:\n  - path: {model}\nmetrics:\n  port: 0\n"
    )
    return {
        "score": [
            *("score", "--model", str(model), "--data", str(history)),
            *("--out", str(folder / "scores.csv")),
        ],
        "evaluate": ["evaluate", "--model", str(model), "--data", str(history), "--no-plot"],
        "calibrate": [
            *("calibrate", "--model", str(model), "--data", str(history)),
            *("--out", str(folder / "new.aew")),
        ],
        "report": ["report", str(model), "--data", str(history)],
        "run": ["run", "--config", str(config)],
    }


@pytest.mark.parametrize("command", ["score", "evaluate", "calibrate", "report", "run"])
def test_every_command_that_loads_a_bundle_exits_2_with_the_message(
    trained: Trained, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = trained.write("period0.aew", _set(trained.meta, "period_s", 0))
    argv = _commands(bad, trained.history, trained.folder)[command]
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"aewatch {command}: model bundle {bad}: period_s = 0 must be between" in err
    assert "--period SECONDS" in err


# -- the property -----------------------------------------------------------------------

_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, -1, 2, 10, 10**9, 0.5, -0.0, 1e308])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
_JSON = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON tree (dict keys, the first two items of each list)."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node[:2]):
            found += _paths(value, (*prefix, i))
    return found


def _mutated(tree: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    out = copy.deepcopy(tree)
    node = out
    for part in path[:-1]:
        node = node[part]
    last = path[-1]
    if how == "delete":
        del node[last]
    elif how == "scale" and type(node[last]) in (int, float):
        node[last] = node[last] * value if isinstance(value, (int, float)) else value
    else:
        node[last] = value
    return out


@st.composite
def _mutations(draw: st.DrawFn, tree: Any) -> Any:
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(tree)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["replace", "delete", "scale"]))
        value = draw(_JSON if how == "replace" else st.sampled_from([0, -1, 2, 10**6, math.nan]))
        tree = _mutated(tree, path, how, value)
    return tree


def _is_clean(path: Path) -> None:
    """Loading ``path`` refuses cleanly or gives a model that scores and decides windows."""
    try:
        bundle = ModelBundle.load(path)
    except BundleError:
        event("refused")
        return
    event("loaded")
    served = ServedModel.from_bundle(bundle)
    rng = np.random.default_rng(0)
    center = bundle.scaler.center.astype(np.float32)
    shape = (3, len(bundle.channels), bundle.window_len)
    windows = center[None, :, None] + rng.normal(size=shape).astype(np.float32)
    scores = served.scorer.score(windows)
    ends = (np.arange(3) + bundle.window_len) * bundle.period_s
    served.detector.decide("w1", ends, scores, windows)


@PROPERTY
@given(data=st.data())
def test_mutated_metadata_is_refused_cleanly_or_loads_a_working_model(
    trained: Trained, data: st.DataObject
) -> None:
    meta = data.draw(_mutations(trained.meta))
    _is_clean(trained.write("mutated.aew", meta))


@PROPERTY
@given(data=st.data())
def test_mutated_tensor_entries_are_refused_cleanly_or_load(
    trained: Trained, data: st.DataObject
) -> None:
    header = data.draw(_mutations(trained.header))
    _is_clean(trained.write("tensors.aew", trained.meta, header))


@PROPERTY
@given(
    flips=st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 2**31)),
)
def test_damaged_bytes_are_refused_cleanly_or_load(
    trained: Trained, flips: list[tuple[int, int]], cut: int | None
) -> None:
    raw = bytearray(trained.path.read_bytes())
    for position, byte in flips:
        raw[position % len(raw)] = byte
    path = trained.folder / "damaged.aew"
    path.write_bytes(bytes(raw if cut is None else raw[: cut % (len(raw) + 1)]))
    _is_clean(path)


@PROPERTY
@given(st.binary(max_size=512) | st.builds(lambda b: b"{" * 8 + b, st.binary(max_size=64)))
def test_random_files_are_refused_cleanly(trained: Trained, blob: bytes) -> None:
    path = trained.folder / "random.aew"
    path.write_bytes(blob)
    with pytest.raises(BundleError, match=str(path)):
        ModelBundle.load(path)
