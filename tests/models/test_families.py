"""The lazy family registry: names to classes, configs, and no heavy import unless a family needs it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import models
from core.errors import RecopsError
from models import UnknownModelFamilyError, config_class, family_class, family_names, load_model, make_config
from models.als import ALSConfig
from models.base import Interactions, ModelLoadError
from models.package import ModelPackage
from tests.models.test_package import CUTOFF, item_table

REPO = Path(__file__).resolve().parents[2]


def test_importing_models_and_loading_a_popularity_package_imports_no_heavy_library(
    block_interactions: Interactions, tmp_path: Path
) -> None:
    ModelPackage(
        model=models.create_model("popularity").fit(block_interactions),
        items=item_table(),
        training_cutoff=CUTOFF,
    ).save(tmp_path / "package")
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        import models, models.package
        from pipelines.params import Params
        before = sorted(m for m in ("implicit", "torch", "scipy") if m in sys.modules)
        Params()  # validating params.yaml reads every family's config class
        package = models.package.ModelPackage.load(Path({str(tmp_path / "package")!r}))
        ids = package.recommend_ids([[]], k=2)
        after = sorted(m for m in ("implicit", "torch") if m in sys.modules)
        print(json.dumps({{"before": before, "after": after, "family": package.family, "n": len(ids[0])}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["family"] == "popularity" and report["n"] == 2
    assert report["before"] == [], "importing models must not import scipy, implicit or torch"
    assert report["after"] == [], "loading a popularity package must not import implicit or torch"


def test_family_class_imports_the_module_on_demand() -> None:
    assert family_names() == sorted(models.FAMILIES)
    assert family_class("als").__module__ == "models.als"
    assert config_class("als") is ALSConfig


def test_unknown_family_is_a_key_error_with_the_known_names() -> None:
    with pytest.raises(UnknownModelFamilyError, match="unknown model family 'bogus'; known families: als"):
        family_class("bogus")
    with pytest.raises(KeyError):
        config_class("bogus")


def test_a_registry_line_pointing_elsewhere_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(models.FAMILIES, "als", "models.itemknn:ItemKNNRecommender")
    with pytest.raises(RecopsError, match=r"FAMILIES\['als'\].*is not the Recommender of 'als'"):
        family_class("als")


def test_make_config_fills_defaults_and_explains_bad_values() -> None:
    assert make_config("als", {"factors": 8}) == ALSConfig(factors=8)
    assert make_config("als") == ALSConfig()
    with pytest.raises(RecopsError, match=r"'als': factors: Input should be greater than or equal to 1"):
        make_config("als", {"factors": 0})


def test_load_model_names_the_unknown_family(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"format_version": 1, "family": "sasrec9", "n_items": 3, "hyperparameters": {}})
    )
    with pytest.raises(ModelLoadError, match="unknown model family 'sasrec9'; known families"):
        load_model(tmp_path)
