"""Config fuzzing: random type errors, missing keys, unknown names and out-of-range numbers are each rejected
with a ConfigError naming the key path, never a traceback from deep inside."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossatlas.config import ConfigError, validate_config

from .test_config import base_config

BASE = base_config()

# (path, a bad value) pairs: wrong types and out-of-range numbers at known numeric/enum keys.
NUMERIC_PATHS = [
    ("threads", "int>=1"),
    ("optimizers.sgd.lr", "number>0"),
    ("optimizers.sgd.momentum", "0<=number<=1"),
    ("studies.universality.recipes.main.epochs", "int>=1"),
    ("studies.universality.recipes.main.batch_size", "int>=1"),
    ("studies.universality.recipes.main.block_size", "int>=1"),
    ("datasets.digits.test_fraction", "0<number<1"),
]
BAD_NUMBERS = {
    "int>=1": st.one_of(st.integers(max_value=0), st.text(max_size=3),
                        st.floats(allow_nan=False).filter(lambda x: not float(x).is_integer()), st.none(),
                        st.lists(st.integers(), max_size=2)),
    "number>0": st.one_of(st.floats(max_value=0, allow_nan=False), st.text(min_size=1, max_size=3)
                          .filter(lambda s: s != "probe"), st.none()),
    "0<=number<=1": st.one_of(st.floats(min_value=1.0001, allow_nan=False, allow_infinity=False),
                              st.floats(max_value=-0.0001, allow_nan=False), st.text(max_size=2)),
    "0<number<1": st.one_of(st.floats(min_value=1, allow_nan=False), st.floats(max_value=0, allow_nan=False),
                            st.booleans()),
}
REQUIRED_KEYS = [
    ("datasets.digits", "source"),
    ("optimizers.sgd", "lr"),
    ("optimizers.sgd", "name"),
    ("architectures.fc1", "model"),
    ("studies.universality.recipes.main", "datasets"),
    ("studies.universality.recipes.main", "architectures"),
]
DICT_PATHS = ["", "datasets.digits", "optimizers.sgd", "studies", "studies.universality.recipes.main",
              "studies.universality"]
NAME_LISTS = ["datasets", "architectures", "optimizers"]


def _get(cfg: dict, path: str):
    node = cfg
    for part in filter(None, path.split(".")):
        node = node[part]
    return node


def _assert_rejected_naming(cfg: dict, *fragments: str) -> None:
    try:
        validate_config(cfg)
    except ConfigError as err:
        msg = str(err)
        for frag in fragments:
            assert frag in msg, f"{frag!r} not named in: {msg}"
        return
    raise AssertionError(f"config accepted: {fragments}")


fuzz = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(st.sampled_from(NUMERIC_PATHS).flatmap(lambda pk: st.tuples(st.just(pk[0]), BAD_NUMBERS[pk[1]])))
def test_bad_number_or_type_names_its_key(case):
    path, value = case
    cfg = copy.deepcopy(BASE)
    parent, key = path.rsplit(".", 1) if "." in path else ("", path)
    _get(cfg, parent)[key] = value
    _assert_rejected_naming(cfg, path)


@fuzz
@given(st.sampled_from(REQUIRED_KEYS))
def test_missing_required_key_is_named(case):
    parent, key = case
    cfg = copy.deepcopy(BASE)
    del _get(cfg, parent)[key]
    _assert_rejected_naming(cfg, parent, key)


@fuzz
@given(st.sampled_from(DICT_PATHS), st.from_regex(r"zz[a-z_]{1,8}", fullmatch=True))
def test_unknown_key_is_named(parent, key):
    cfg = copy.deepcopy(BASE)
    _get(cfg, parent)[key] = {"zz_unknown": 1}
    _assert_rejected_naming(cfg, key)


@fuzz
@given(st.sampled_from(NAME_LISTS), st.from_regex(r"undefined_[a-z0-9]{1,6}", fullmatch=True))
def test_unknown_name_in_recipe_is_named(kind, name):
    cfg = copy.deepcopy(BASE)
    cfg["studies"]["universality"]["recipes"]["main"][kind].append(name)
    _assert_rejected_naming(cfg, f"studies.universality.recipes.main.{kind}", name)


@fuzz
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=4)),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                  max_size=3), max_leaves=8))
def test_arbitrary_garbage_never_crashes_the_validator(garbage):
    cfg = copy.deepcopy(BASE)
    cfg["studies"]["universality"]["recipes"]["main"]["checkpoints"] = garbage
    try:
        validate_config(cfg)
    except ConfigError:
        pass
