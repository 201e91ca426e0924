"""Loading scenarios: bundled files, by name and by path, ``--set`` overrides, and error messages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from tokenomy.scenario import (
    Scenario,
    ScenarioError,
    apply_overrides,
    bundled_scenarios,
    load_scenario,
    resolve_scenario_path,
)

BUNDLED = bundled_scenarios()


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _load_error(*args, **kwargs) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(*args, **kwargs)
    message = str(info.value)
    assert "Traceback" not in message
    assert message.strip(), "error message is empty"
    return message


# -- bundled scenarios --------------------------------------------------------------------------


def test_bundled_scenarios_include_the_documented_ones():
    assert {"baseline", "automation_shock"} <= set(BUNDLED)
    for name, path in BUNDLED.items():
        assert path.suffix == ".toml"
        assert path.stem == name
        assert path.is_file()


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_scenario_loads_with_a_question(name):
    sc = load_scenario(name)
    assert isinstance(sc, Scenario)
    assert sc.question.strip(), f"{name}: empty question"
    # the scenario's own name matches its file, so runs are labelled correctly
    assert sc.name == name


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_scenario_file_starts_with_header_comment(name):
    text = BUNDLED[name].read_text(encoding="utf-8")
    first = text.splitlines()[0]
    assert first.startswith("#"), f"{BUNDLED[name]}: first line is not a comment: {first!r}"
    assert len(first.lstrip("# ").strip()) > 0, "header comment is blank"


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_load_by_name_equals_load_by_path(name, tmp_path):
    by_name = load_scenario(name)
    by_path = load_scenario(BUNDLED[name])
    by_str_path = load_scenario(str(BUNDLED[name]))
    copied = tmp_path / f"{name}.toml"
    copied.write_bytes(BUNDLED[name].read_bytes())
    by_copy = load_scenario(copied)
    assert by_name == by_path == by_str_path == by_copy


def test_bundled_values_match_the_file():
    raw = tomllib.loads(BUNDLED["baseline"].read_text(encoding="utf-8"))
    sc = load_scenario("baseline")
    assert sc.households == raw["households"]
    assert sc.firms == raw["firms"]
    assert sc.seed == raw["seed"]
    assert sc.automation.schedule == raw["automation"]["schedule"]
    assert sc.automation.phi_end == pytest.approx(raw["automation"]["phi_end"])


def test_unknown_name_lists_bundled_scenarios():
    message = _load_error("no_such_scenario")
    assert "no_such_scenario" in message
    for name in BUNDLED:
        assert name in message


def test_resolve_by_name_returns_the_bundled_file():
    assert resolve_scenario_path("baseline") == BUNDLED["baseline"]


def test_bundled_name_not_shadowed_by_directory_in_cwd(tmp_path, monkeypatch):
    (tmp_path / "baseline").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_scenario("baseline") == load_scenario(BUNDLED["baseline"])


# -- overrides ----------------------------------------------------------------------------------


def test_override_top_level_int():
    sc = load_scenario("baseline", ["households=500"])
    assert sc.households == 500
    assert isinstance(sc.households, int)
    # everything else is untouched
    assert sc.model_dump(exclude={"households"}) == load_scenario("baseline").model_dump(exclude={"households"})


def test_override_nested_float():
    base = load_scenario("baseline")
    assert base.roles.household.mpc_income != 0.7
    sc = load_scenario("baseline", ["roles.household.mpc_income=0.7"])
    assert sc.roles.household.mpc_income == pytest.approx(0.7)
    assert sc.roles.household.mpc_wealth == base.roles.household.mpc_wealth
    assert sc.roles.firm == base.roles.firm


@pytest.mark.parametrize("value", ['"exponential"', "exponential"], ids=["quoted", "bare_word"])
def test_override_literal_quoted_and_bare_word(value):
    assert load_scenario("baseline").automation.schedule == "linear"
    sc = load_scenario("baseline", [f"automation.schedule={value}"])
    assert sc.automation.schedule == "exponential"


@pytest.mark.parametrize("value", ['"linear"', "linear"], ids=["quoted", "bare_word"])
def test_override_schedule_linear_on_constant_file(value, tmp_path):
    path = _write(tmp_path, "c.toml", '# c\n[automation]\nschedule = "constant"\n')
    assert load_scenario(path).automation.schedule == "constant"
    assert load_scenario(path, [f"automation.schedule={value}"]).automation.schedule == "linear"


@pytest.mark.parametrize(
    ("override", "getter", "expected"),
    [
        ("rails.chain_enabled=false", lambda s: s.rails.chain_enabled, False),
        ("rails.chain_enabled=true", lambda s: s.rails.chain_enabled, True),
        ("roles.firm.equity_issuance=false", lambda s: s.roles.firm.equity_issuance, False),
    ],
)
def test_override_booleans(override, getter, expected):
    sc = load_scenario("baseline", [override])
    assert getter(sc) is expected


def test_override_creates_missing_section(tmp_path):
    path = _write(tmp_path, "empty.toml", "# nothing\n")
    sc = load_scenario(path, ["roles.bank.loan_rate=0.01", "record.payments=role"])
    assert sc.roles.bank.loan_rate == pytest.approx(0.01)
    assert sc.record.payments == "role"


def test_later_override_wins_and_whitespace_is_ignored():
    sc = load_scenario("baseline", ["households=500", " households = 700 "])
    assert sc.households == 700


def test_keyword_fields_override_file_and_none_is_ignored():
    sc = load_scenario("baseline", ["seed=3"], rounds=7, seed=None)
    assert sc.rounds == 7
    assert sc.seed == 3
    sc = load_scenario("baseline", ["seed=3"], seed=9)
    assert sc.seed == 9


def test_apply_overrides_returns_a_copy():
    data = {"households": 10, "roles": {"household": {"mpc_income": 0.5}}}
    out = apply_overrides(data, ["households=20", "roles.household.mpc_income=0.6", "rails.chain_enabled=false"])
    assert out == {
        "households": 20,
        "roles": {"household": {"mpc_income": 0.6}},
        "rails": {"chain_enabled": False},
    }
    assert data == {"households": 10, "roles": {"household": {"mpc_income": 0.5}}}


def test_scenario_is_frozen():
    sc = load_scenario("baseline")
    with pytest.raises(ValidationError):
        sc.households = 5  # type: ignore[misc]
    with pytest.raises(ValidationError):
        sc.roles.household.mpc_income = 0.1  # type: ignore[misc]
    assert sc.households == load_scenario("baseline").households
    assert sc.roles.household.mpc_income == load_scenario("baseline").roles.household.mpc_income


def test_scenario_model_rejects_unknown_fields_directly():
    with pytest.raises(ValidationError):
        Scenario.model_validate({"houshold": 5})


# -- errors in files ----------------------------------------------------------------------------


def _line_ref(path: Path, line: int) -> str:
    return f"{path}:{line}:"


def test_unknown_top_level_key(tmp_path):
    path = _write(tmp_path, "typo.toml", '# typo\nname = "typo"\nhoushold = 5\nrounds = 3\n')
    message = _load_error(path)
    assert _line_ref(path, 3) in message
    assert "'houshold'" in message
    assert "unknown field" in message


def test_unknown_nested_key(tmp_path):
    path = _write(
        tmp_path,
        "nested.toml",
        '# nested\nname = "n"\n\n[roles.household]\nmpc_income = 0.5\nmpc_incme = 0.6\n\n[rails]\nchain_fee = 0.0\n',
    )
    message = _load_error(path)
    assert _line_ref(path, 6) in message
    assert "roles.household.mpc_incme" in message
    assert "unknown field" in message


def test_unknown_section(tmp_path):
    path = _write(tmp_path, "sec.toml", '# s\nname = "s"\n\n[roles.houshold]\nmpc_income = 0.5\n')
    message = _load_error(path)
    assert _line_ref(path, 4) in message
    assert "roles.houshold" in message


def test_unknown_key_as_dotted_key(tmp_path):
    path = _write(tmp_path, "dotted.toml", "# d\n[roles]\nhousehold.bogus = 1\n")
    message = _load_error(path)
    assert _line_ref(path, 3) in message
    assert "roles.household.bogus" in message


def test_same_key_name_in_other_section_gets_the_right_line(tmp_path):
    path = _write(
        tmp_path,
        "same.toml",
        "# same key name twice\n[roles.bank]\npayout_ratio = 0.5\n\n[roles.firm]\npayout_ratio = 2.0\n",
    )
    message = _load_error(path)
    assert _line_ref(path, 6) in message
    assert "roles.firm.payout_ratio" in message
    assert "roles.bank" not in message


def test_line_number_after_header_with_trailing_comment(tmp_path):
    path = _write(tmp_path, "hc.toml", "# hc\n[roles.household]  # households\nbogus = 1\n")
    message = _load_error(path)
    assert "roles.household.bogus" in message
    assert _line_ref(path, 3) in message


def test_wrong_type(tmp_path):
    path = _write(tmp_path, "wt.toml", '# wrong type\nname = "w"\nhouseholds = "many"\n')
    message = _load_error(path)
    assert _line_ref(path, 3) in message
    assert "'households'" in message
    assert "integer" in message
    assert "'many'" in message


def test_wrong_type_nested(tmp_path):
    path = _write(tmp_path, "wtn.toml", '# wrong type\n[automation]\nphi0 = 0.6\nschedule = "quadratic"\n')
    message = _load_error(path)
    assert _line_ref(path, 4) in message
    assert "automation.schedule" in message
    assert "'quadratic'" in message


def test_out_of_range(tmp_path):
    path = _write(tmp_path, "oor.toml", '# out of range\nname = "o"\nrounds = 3\nhouseholds = 0\n')
    message = _load_error(path)
    assert _line_ref(path, 4) in message
    assert "'households'" in message
    assert "greater than or equal to 1" in message
    assert "(got 0)" in message


def test_several_errors_are_all_reported(tmp_path):
    path = _write(tmp_path, "many.toml", '# many\nhouseholds = 0\nfirms = "x"\n[rails]\nbogus = 1\n')
    message = _load_error(path)
    assert _line_ref(path, 2) in message and "'households'" in message
    assert _line_ref(path, 3) in message and "'firms'" in message
    assert _line_ref(path, 5) in message and "rails.bogus" in message


def test_model_validator_error_names_section(tmp_path):
    path = _write(tmp_path, "rails.toml", "# r\n[rails]\ncard_adoption = 0.9\nchain_adoption = 0.5\n")
    message = _load_error(path)
    assert _line_ref(path, 2) in message
    assert "'rails'" in message
    assert "card_adoption + chain_adoption" in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    message = _load_error(path)
    assert str(path) in message
    assert "no such" in message


def test_missing_file_in_missing_directory(tmp_path):
    path = tmp_path / "sub" / "nope"
    message = _load_error(str(path))
    assert str(path) in message


def test_invalid_toml_syntax(tmp_path):
    path = _write(tmp_path, "bad.toml", '# bad\nname = "b"\n\nhouseholds = = 3\n')
    message = _load_error(path)
    assert str(path) in message
    assert "invalid TOML" in message
    assert re.search(r"line 4\b", message), message


def test_invalid_toml_unclosed_table(tmp_path):
    path = _write(tmp_path, "bad2.toml", '# bad\nname = "b"\n[roles.household\nmpc_income = 0.5\n')
    message = _load_error(path)
    assert str(path) in message
    assert re.search(r"line 3\b", message), message


# -- errors in --set ----------------------------------------------------------------------------


def test_set_without_equals():
    message = _load_error("baseline", ["households"])
    assert "--set" in message
    assert "'households'" in message
    assert "FIELD=VALUE" in message


def test_set_empty_field_name():
    message = _load_error("baseline", ["=5"])
    assert "--set" in message
    assert "empty field name" in message


def test_set_bad_value_type():
    message = _load_error("baseline", ["households=abc"])
    assert str(BUNDLED["baseline"]) in message
    assert "--set households=abc" in message
    assert "field 'households'" in message
    assert "'abc'" in message


def test_set_bad_nested_value():
    message = _load_error("baseline", ["roles.household.mpc_income=1.5"])
    assert "roles.household.mpc_income" in message
    assert "1.5" in message


def test_set_unknown_field():
    message = _load_error("baseline", ["roles.household.mpc_incme=0.5"])
    assert "roles.household.mpc_incme" in message
    assert "unknown field" in message


def test_set_bad_value_does_not_blame_a_file_line():
    message = _load_error("baseline", ["households=abc"])
    assert not re.search(r"\):\d+:", message), message


def test_set_into_a_value_not_a_section():
    message = _load_error("baseline", ["households.x=1"])
    assert "--set" in message
    assert "households.x=1" in message
    assert "'households' is a value, not a section" in message


def test_set_through_nested_value():
    message = _load_error("baseline", ["automation.schedule.kind=1"])
    assert "'schedule' is a value, not a section" in message


def test_scenario_error_is_a_value_error():
    assert issubclass(ScenarioError, ValueError)
    with pytest.raises(ValueError):
        load_scenario("baseline", ["households=0"])
