"""The vector parts' table (schemas.vector_parts) is what the model record, the recipe and the trainer read."""
import numpy as np
import pytest

from core import vectors as recipe
from schemas import vector_parts
from schemas.layout import ModelFiles
from schemas.model_info import ModelInfo, ModelInfoError

pytestmark = pytest.mark.unit


def test_each_part_has_its_own_embedder_file_and_the_first_part_is_the_embedder():
    files = [part.file for part in vector_parts.VECTOR_PARTS]
    assert len(set(files)) == len(files)
    assert set(files) <= {v for k, v in vars(ModelFiles).items() if not k.startswith("_")}
    assert vector_parts.embedder_files()[0] == ModelFiles.EMBEDDER
    info = ModelInfo(model_id="m", kind="contrastive", parts=("tiles", "features", "genres"), part_dims=(3, 2, 2),
                     genres=["a", "b"])
    assert [info.embedder_file(p) for p in info.parts] == [
        ModelFiles.EMBEDDER, ModelFiles.FEATURES_EMBEDDER, ModelFiles.GENRE_EMBEDDER]
    alone = ModelInfo(model_id="m", kind="features", parts=("features",), part_dims=(64,))
    assert alone.embedder_file("features") == ModelFiles.EMBEDDER  # a model of one part has embedder.keras only


def test_model_records_are_checked_against_the_table():
    old = ModelInfo.from_dict({"model_id": "m", "kind": "cnn", "input": "tiles+features"})  # lengths from the table
    assert old.part_dims == (vector_parts.PART_DIM, vector_parts.PART_DIM)
    with pytest.raises(ModelInfoError, match="ordered selection"):
        ModelInfo(model_id="m", kind="cnn", parts=("features", "tiles"), part_dims=(2, 2))
    with pytest.raises(ModelInfoError, match="none takes the model's inputs"):
        ModelInfo(model_id="m", kind="cnn", parts=("genres",), part_dims=(1,), genres=["a"])
    with pytest.raises(ModelInfoError, match="one dimension per genre"):
        ModelInfo(model_id="m", kind="cnn", parts=("tiles", "genres"), part_dims=(2, 3), genres=["a"])


def test_the_recipe_joins_the_input_parts_then_runs_the_joined_ones():
    rng = np.random.default_rng(0)
    tiles, features = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    info = ModelInfo(model_id="m", kind="contrastive", parts=("tiles", "features", "genres"), part_dims=(3, 2, 7),
                     genres=["a", "b", "c", "d", "e", "f", "g"])
    double = lambda joined: np.concatenate([joined, joined, joined[:, :2]], axis=1)  # noqa: E731
    got = recipe.track_vectors(info, tiles=tiles, features=features, embedders={"genres": double})
    joined = np.concatenate([recipe.unit(tiles), recipe.unit(features)], axis=1) / np.float32(np.sqrt(2.0))
    np.testing.assert_allclose(got, recipe.unit(double(joined)), atol=1e-6)
    np.testing.assert_array_equal(recipe.join_halves(tiles, features), recipe.join_parts([tiles, features]))
    with pytest.raises(ValueError, match="give its embedder"):
        recipe.track_vectors(info, tiles=tiles, features=features)
    with pytest.raises(ValueError, match=r"\['features'\]"):
        recipe.track_vectors(info, tiles=tiles, embedders={"genres": double})
