"""The contract every model family in ``models.FAMILIES`` honours (one suite, all families).

Modelled on implicit's ``RecommenderBaseTestMixin``: known answers on a toy block dataset, exclusions and
masks, batch == single, save/load round trips and refusals, cold users, and the shape of every result.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import models.base as base
from core.errors import RecopsError
from models import FAMILIES, UnknownModelFamilyError, create_model, family_class, load_model
from models.base import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    IntArray,
    Interactions,
    ModelLoadError,
    Recommender,
    top_k,
)
from pipelines.params import TrainParams
from tests.models.conftest import (
    FIT_CONTEXT,
    GROUP_A,
    GROUP_B,
    MOST_POPULAR,
    N_ITEMS,
    NON_PERSONALISED,
    make_interactions,
    new_model,
    old_hit_and_new_hit,
)


def sample_histories(data: Interactions) -> list[IntArray]:
    """Every user's full history plus a few hand-made ones (short, repeated items, empty)."""
    histories = data.histories()
    return [
        *histories,
        np.array([0], dtype=np.int64),
        np.array([6, 6, 6], dtype=np.int64),
        np.array([0, 5, 1, 10], dtype=np.int64),
        np.array([], dtype=np.int64),
    ]


def assert_well_formed(ids: IntArray, scores: np.ndarray, n_rows: int, k: int, n_items: int) -> None:
    assert ids.shape == scores.shape == (n_rows, k)
    assert ids.dtype == np.int64
    assert scores.dtype == np.float32
    for row_ids, row_scores in zip(ids, scores, strict=True):
        valid = row_ids[row_ids >= 0]
        assert np.all(valid < n_items)
        assert len(np.unique(valid)) == len(valid), "duplicate item in a row"
        # Padding (-1) only at the end, with -inf scores.
        assert np.all(row_ids[len(valid) :] == -1)
        assert np.all(np.isneginf(row_scores[len(valid) :]))
        assert np.all(np.isfinite(row_scores[: len(valid)]))
        assert np.all(np.diff(row_scores[: len(valid)]) <= 0), "scores must not increase along a row"


# ------------------------------------------------------------------------------------------- known answers


def test_known_answer(family: str, fitted: Recommender) -> None:
    if family in NON_PERSONALISED:
        ids, _ = fitted.recommend([np.array([0, 1], dtype=np.int64)], k=3)
        assert ids[0, 0] == MOST_POPULAR
        assert set(ids[0]) <= set(GROUP_B), "the popular group comes first"
    else:
        # Group B is more popular overall, but a group-A history must bring group A to the top.
        ids, _ = fitted.recommend([np.array([0, 1], dtype=np.int64), np.array([5, 6], dtype=np.int64)], k=5)
        assert set(ids[0]) == set(GROUP_A)
        assert set(ids[1]) == set(GROUP_B)
        ids, _ = fitted.recommend([np.array([0, 1], dtype=np.int64)], k=3, exclude=[np.array([0, 1])])
        assert set(ids[0]) == {2, 3, 4}


def test_never_used_items_stay_out_of_the_top(fitted: Recommender, block_interactions: Interactions) -> None:
    # Five used items per group: the top 5 never needs an item nobody used. (Deeper down, a factor model
    # may rank a never-used item, score 0, above the other group's items, which score slightly below 0.)
    ids, _ = fitted.recommend(sample_histories(block_interactions), k=5)
    assert not np.isin(ids, [10, 11]).any(), "items without interactions must not beat the user's group"


# ------------------------------------------------------------------------------------------- exclusions


def test_seen_items_excluded_on_request(fitted: Recommender, block_interactions: Interactions) -> None:
    histories = sample_histories(block_interactions)
    ids, _ = fitted.recommend(histories, k=5, exclude=histories)
    for row_ids, history in zip(ids, histories, strict=True):
        assert not set(row_ids.tolist()) & set(history.tolist())
    # Without exclusion, seen items are allowed (evaluate.exclude_seen=false keeps repeat purchases).
    ids_all, _ = fitted.recommend(histories, k=N_ITEMS)
    assert any(set(r.tolist()) & set(h.tolist()) for r, h in zip(ids_all, histories, strict=True))


def test_excluding_everything_pads_the_row(fitted: Recommender) -> None:
    everything = np.arange(N_ITEMS, dtype=np.int64)
    ids, scores = fitted.recommend([np.array([0], dtype=np.int64)], k=3, exclude=[everything])
    assert np.all(ids == -1)
    assert np.all(np.isneginf(scores))


def test_item_mask_respected(fitted: Recommender, block_interactions: Interactions) -> None:
    histories = sample_histories(block_interactions)
    mask = np.ones(N_ITEMS, dtype=bool)
    mask[[MOST_POPULAR, 0, 2, 9]] = False
    ids, scores = fitted.recommend(histories, k=N_ITEMS, item_mask=mask)
    assert not np.isin(ids, np.flatnonzero(~mask)).any()
    assert_well_formed(ids, scores, len(histories), N_ITEMS, N_ITEMS)
    assert np.all((ids >= 0).sum(axis=1) == mask.sum()), "every allowed item still appears"


def test_item_mask_of_wrong_shape_is_refused(fitted: Recommender) -> None:
    with pytest.raises(ValueError, match="item_mask"):
        fitted.recommend([np.array([0])], k=3, item_mask=np.ones(N_ITEMS + 1, dtype=bool))


def test_exclude_must_match_histories(fitted: Recommender) -> None:
    with pytest.raises(ValueError, match="exclude"):
        fitted.recommend([np.array([0]), np.array([1])], k=3, exclude=[np.array([0])])


# ------------------------------------------------------------------------------------------- batch vs single


def test_batch_equals_single_user(fitted: Recommender, block_interactions: Interactions) -> None:
    histories = sample_histories(block_interactions)
    batch_ids, batch_scores = fitted.recommend(histories, k=6, exclude=histories[::-1])
    for row, (history, excluded) in enumerate(zip(histories, histories[::-1], strict=True)):
        ids, scores = fitted.recommend([history], k=6, exclude=[excluded])
        np.testing.assert_array_equal(ids[0], batch_ids[row])
        np.testing.assert_allclose(scores[0], batch_scores[row], rtol=1e-5, atol=1e-6)


def test_score_shape_and_order_independence(fitted: Recommender, block_interactions: Interactions) -> None:
    histories = sample_histories(block_interactions)
    scores = fitted.score(histories)
    assert scores.shape == (len(histories), N_ITEMS)
    assert scores.dtype == np.float32
    reversed_scores = fitted.score(histories[::-1])
    np.testing.assert_allclose(reversed_scores[::-1], scores, rtol=1e-5, atol=1e-6)


def test_score_rejects_out_of_range_items(fitted: Recommender) -> None:
    with pytest.raises(ValueError, match="out of range"):
        fitted.score([np.array([N_ITEMS], dtype=np.int64)])
    with pytest.raises(ValueError, match="out of range"):
        fitted.score([np.array([-1], dtype=np.int64)])


def test_empty_batch(fitted: Recommender) -> None:
    ids, scores = fitted.recommend([], k=4)
    assert ids.shape == scores.shape == (0, 4)


# ------------------------------------------------------------------------------------------- cold users, k


def test_cold_users_get_popularity_order(fitted: Recommender) -> None:
    empty = np.array([], dtype=np.int64)
    ids, scores = fitted.recommend([empty, empty], k=5)
    expected, _ = top_k(fitted.cold_scores()[None, :].astype(np.float32), 5)
    np.testing.assert_array_equal(ids[0], expected[0])
    np.testing.assert_array_equal(ids[0], ids[1])
    assert ids[0, 0] == MOST_POPULAR
    assert_well_formed(ids, scores, 2, 5, N_ITEMS)


def test_cold_users_get_recent_popularity(family: str) -> None:
    """Except for the all-time popularity family, cold users get the recently popular item first."""
    model = new_model(family).fit(make_interactions(old_hit_and_new_hit()), ctx=FIT_CONTEXT)
    ids, _ = model.recommend([np.array([], dtype=np.int64)], k=2)
    assert ids.tolist() == ([[0, 1]] if family == "popularity" else [[1, 0]])


def test_k_beyond_catalogue_pads_with_minus1(fitted: Recommender, block_interactions: Interactions) -> None:
    histories = sample_histories(block_interactions)
    ids, scores = fitted.recommend(histories, k=N_ITEMS + 5)
    assert_well_formed(ids, scores, len(histories), N_ITEMS + 5, N_ITEMS)
    assert np.all(ids[:, :N_ITEMS] >= 0)
    assert np.all(ids[:, N_ITEMS:] == -1)


@pytest.mark.parametrize("k", [1, 3, N_ITEMS])
def test_results_well_formed(fitted: Recommender, block_interactions: Interactions, k: int) -> None:
    histories = sample_histories(block_interactions)
    ids, scores = fitted.recommend(histories, k=k, exclude=[h[:1] for h in histories])
    assert_well_formed(ids, scores, len(histories), k, N_ITEMS)


def test_k_must_be_positive(fitted: Recommender) -> None:
    with pytest.raises(ValueError, match="k must be"):
        fitted.recommend([np.array([0])], k=0)


# ------------------------------------------------------------------------------------------- fitting


def test_unfitted_model_refuses_to_recommend(family: str) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        new_model(family).recommend([np.array([0])], k=3)


def test_fit_on_nothing_is_refused(family: str) -> None:
    empty = Interactions(
        user_idx=np.empty(0, np.int64),
        item_idx=np.empty(0, np.int64),
        weight=np.empty(0, np.float32),
        ts=np.empty(0, np.int64),
        session_idx=np.empty(0, np.int64),
        n_users=3,
        n_items=4,
    )
    with pytest.raises(ValueError, match="zero interactions"):
        new_model(family).fit(empty)


def test_deterministic_given_hyperparameters(family: str, block_interactions: Interactions) -> None:
    histories = sample_histories(block_interactions)
    first = new_model(family).fit(block_interactions, ctx=FIT_CONTEXT).score(histories)
    second = new_model(family).fit(block_interactions, ctx=FIT_CONTEXT).score(histories)
    np.testing.assert_array_equal(first, second)


def test_hyperparameters_rebuild_the_model(fitted: Recommender) -> None:
    params = fitted.hyperparameters()
    assert json.loads(json.dumps(params)) == params, "hyper-parameters must be JSON-serialisable"
    rebuilt = type(fitted)(type(fitted).config_class(**params))
    assert rebuilt.hyperparameters() == params
    assert rebuilt.config == fitted.config


# ------------------------------------------------------------------------------------------- save / load


def test_save_load_round_trip(fitted: Recommender, block_interactions: Interactions, tmp_path: Path) -> None:
    histories = sample_histories(block_interactions)
    fitted.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    for loaded in (load_model(tmp_path / "model"), type(fitted).load(tmp_path / "model")):
        assert type(loaded) is type(fitted)
        assert loaded.hyperparameters() == fitted.hyperparameters()
        np.testing.assert_array_equal(loaded.score(histories), fitted.score(histories))
        for kwargs in ({}, {"exclude": histories}):
            expected = fitted.recommend(histories, k=5, **kwargs)
            got = loaded.recommend(histories, k=5, **kwargs)
            np.testing.assert_array_equal(got[0], expected[0])
            np.testing.assert_array_equal(got[1], expected[1])


def test_no_pickle_is_ever_written(fitted: Recommender, tmp_path: Path) -> None:
    fitted.save(tmp_path / "a")
    load_model(tmp_path / "a").save(tmp_path / "b")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written
    assert not [p for p in written if p.suffix in {".pkl", ".pickle", ".joblib", ".npy", ".npz"}]
    for path in written:
        assert not path.read_bytes().startswith(b"\x80"), f"{path} looks like a pickle stream"


def test_load_refuses_another_family(family: str, fitted: Recommender, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    other = family_class(next(name for name in sorted(FAMILIES) if name != family))
    with pytest.raises(ModelLoadError, match=f"holds a '{family}' model"):
        other.load(tmp_path)


def test_load_refuses_unknown_family(fitted: Recommender, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    config["family"] = "no_such_family"
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="unknown model family 'no_such_family'"):
        load_model(tmp_path)


def test_load_refuses_missing_weights(fitted: Recommender, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelLoadError, match="cannot read weights"):
        load_model(tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_load_refuses_corrupt_weights(fitted: Recommender, tmp_path: Path, damage: str) -> None:
    fitted.save(tmp_path)
    weights = tmp_path / WEIGHTS_FILE
    content = weights.read_bytes()
    damaged = {"garbage": b"\x00not safetensors" * 8, "truncated": content[: len(content) // 2], "empty": b""}
    weights.write_bytes(damaged[damage])
    with pytest.raises(ModelLoadError):
        load_model(tmp_path)


def test_load_refuses_missing_or_corrupt_config(fitted: Recommender, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_model(tmp_path)
    (tmp_path / CONFIG_FILE).unlink()
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(tmp_path)


def test_load_refuses_bad_hyperparameters(fitted: Recommender, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    config["hyperparameters"]["no_such_knob"] = 1
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="hyperparameters"):
        load_model(tmp_path)


def test_load_refuses_weights_of_another_size(fitted: Recommender, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    config["n_items"] = N_ITEMS + 3
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelLoadError):
        load_model(tmp_path)


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"popularity"}))
def test_load_refuses_weights_of_another_family(family: str, fitted: Recommender, tmp_path: Path) -> None:
    """A weights file that lacks the family's own arrays (here: a popularity model's) is refused."""
    fitted.save(tmp_path / "model")
    create_model("popularity").fit(_tiny()).save(tmp_path / "pop")
    (tmp_path / "model" / WEIGHTS_FILE).write_bytes((tmp_path / "pop" / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ModelLoadError):
        load_model(tmp_path / "model")


def _tiny() -> Interactions:
    users = np.arange(N_ITEMS, dtype=np.int64) % 3
    return Interactions(
        user_idx=users,
        item_idx=np.arange(N_ITEMS, dtype=np.int64),
        weight=np.ones(N_ITEMS, np.float32),
        ts=np.arange(N_ITEMS, dtype=np.int64),
        session_idx=users,
        n_users=3,
        n_items=N_ITEMS,
    )


# ------------------------------------------------------------------------------------------- factory


def test_every_family_is_registered_under_its_name() -> None:
    assert {"popularity", "recent_popularity", "itemknn", "als"} <= set(FAMILIES)
    for name in FAMILIES:
        cls = family_class(name)
        assert cls.family == name
        assert cls.config_class is not base.ModelConfig, f"{name} needs its own config class"
        assert cls.config_class.model_config.get("frozen") is True
        assert cls.config_class.model_config.get("extra") == "forbid"


def test_create_model_accepts_params_yaml_sections(family: str) -> None:
    """The params.yaml section is the family's config: as an instance, or as the mapping written there."""
    config = TrainParams().config(family)
    assert isinstance(config, family_class(family).config_class)
    assert create_model(family, config).config is config
    from_mapping = create_model(family, config.model_dump(mode="json"))
    assert from_mapping.config == config
    assert from_mapping.hyperparameters() == config.model_dump(mode="json")


def test_configs_are_frozen(family: str) -> None:
    config = family_class(family).config_class()
    for name in type(config).model_fields:
        with pytest.raises(ValidationError):
            setattr(config, name, getattr(config, name))


def test_create_model_refuses_unknown_family() -> None:
    with pytest.raises(UnknownModelFamilyError, match=r"unknown model family 'bogus'.*als"):
        create_model("bogus", {})
    assert issubclass(UnknownModelFamilyError, RecopsError)


def test_create_model_refuses_bad_hyperparameters(family: str) -> None:
    with pytest.raises(
        RecopsError, match=f"invalid hyper-parameters for model family '{family}'.*no_such_knob"
    ):
        create_model(family, {"no_such_knob": 1})


def test_create_model_refuses_a_config_of_another_family(family: str) -> None:
    other = family_class(next(name for name in sorted(FAMILIES) if name != family)).config_class()
    with pytest.raises(RecopsError, match=f"model family '{family}' takes a"):
        create_model(family, other)
    with pytest.raises(TypeError, match="takes a"):
        family_class(family)(other)


def test_fit_refuses_valid_data_of_another_index(family: str, block_interactions: Interactions) -> None:
    other = make_interactions([(0, 0, 1.0, 0, 0)], n_users=2, n_items=N_ITEMS + 1)
    with pytest.raises(ValueError, match="same index"):
        new_model(family).fit(block_interactions, valid=other, ctx=FIT_CONTEXT)


def test_model_load_error_is_a_recops_error() -> None:
    assert issubclass(ModelLoadError, RecopsError)


def test_recommend_in_blocks_equals_one_block(
    fitted: Recommender, block_interactions: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    histories = sample_histories(block_interactions)
    exclude = [h[-1:] for h in histories]
    whole = fitted.recommend(histories, k=4, exclude=exclude)
    monkeypatch.setattr(base, "RECOMMEND_BLOCK_CELLS", 3 * N_ITEMS)  # three users per block
    blocked = fitted.recommend(histories, k=4, exclude=exclude)
    np.testing.assert_array_equal(blocked[0], whole[0])
    np.testing.assert_allclose(blocked[1], whole[1], rtol=1e-5, atol=1e-6)
