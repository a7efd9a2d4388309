"""Issue 28, as a property: arbitrary suite files and option strings never end in a traceback
(exit 0 or 2, and an exit 2 is one line ``error: ...``) and never change an existing store.

`--plan` keeps each example cheap (no cell is computed) and promises no write, so the store must
be byte-identical after every example, accepted or refused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import one_line_error, snapshot, synthetic_store

from mgbench.attacks.spec import TABLE_KEYS as ATTACK_KEYS
from mgbench.corruptions.condition import TABLE_KEYS as CORRUPTION_KEYS
from mgbench.suites import SUITE_KEYS

# Values a careful user (or a typo) might write, beside arbitrary ones.
PLAUSIBLE = st.sampled_from(["clean", "corruption", "attack", "fog", "1-2", "4/255", "linf", "l2", "pgd", "fgsm",
                             "torch", "folder", "alexnet", "resnet-tiny", "", "0", "-1", "1e9", "nan"])
SCALARS = st.one_of(PLAUSIBLE, st.text(max_size=8), st.integers(-3, 10**20), st.booleans(),
                    st.floats(allow_nan=True, allow_infinity=True))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=4)
KEYS = st.one_of(st.sampled_from(sorted({*SUITE_KEYS, *ATTACK_KEYS, *CORRUPTION_KEYS})),
                 st.text(min_size=1, max_size=6))


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(max(min(value, 2**63 - 1), -(2**63)))  # TOML integers are 64-bit
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # a TOML basic string


def toml_document(top: dict[str, object], tables: list[dict[str, object]]) -> str:
    lines = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in top.items() if k != "conditions"]
    for table in tables:
        lines.append("[[conditions]]")
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def existing_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("property") / "s.sqlite")


@pytest.fixture(scope="module", autouse=True)
def _elsewhere(tmp_path_factory: pytest.TempPathFactory):
    """Run from a scratch folder: a relative path that an example passes is created there."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        yield


def _check(code: int, err: str) -> None:
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        one_line_error(code, err)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(top=st.dictionaries(KEYS, VALUES, max_size=4),
       tables=st.lists(st.dictionaries(KEYS, VALUES, max_size=3).map(
           lambda t: t if "type" in t else {"type": "clean", **t}), max_size=2))
def test_arbitrary_suite_files(run_cli, tmp_path: Path, existing_store: Path, top, tables) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(toml_document(top, tables))
    before = snapshot(existing_store)
    code, _, err = run_cli("run", "--suite", str(suite), "--model", "resnet-tiny", "--limit", "4",
                           "--store", str(existing_store), "--plan", "--plan-images", "1", "--workers", "0",
                           "--device", "cpu", "-q")
    _check(code, err)
    assert snapshot(existing_store) == before


OPTIONS = ["--limit", "--seed", "--batch-size", "--workers", "--severities", "--corruptions", "--backend",
           "--mce-baseline", "--model", "--store", "--device", "--corruption-preprocessing"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(OPTIONS),
       value=st.one_of(PLAUSIBLE, st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                                                 blacklist_characters="\x00"), max_size=12)))
def test_arbitrary_option_strings(run_cli, existing_store: Path, option: str, value: str) -> None:
    before = snapshot(existing_store)
    store = [] if option == "--store" else ["--store", str(existing_store)]
    code, _, err = run_cli("run", "--suite", "corruptions", "--model", "resnet-tiny", "--limit", "4",
                           "--corruptions", "fog", "--severities", "1", *store, option, value, "--plan",
                           "--plan-images", "1", "--device", "cpu", "-q")
    _check(code, err)
    assert snapshot(existing_store) == before
