"""ScoringPipeline save/load and the never-pickle ``.npz`` persistence."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from scratch_models import ArtifactError, LogisticRegression, ScoringPipeline, TabularPreprocessor, persistence
from scratch_models.persistence import FORMAT_VERSION, load_npz, save_npz, sha256_file


def columns(n: int = 300, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, size=n).astype(np.float64)
    tenure[rng.random(n) < 0.05] = np.nan
    charges = rng.uniform(18, 120, size=n)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], size=n)
    senior = (rng.random(n) < 0.2).astype(np.float64)
    logit = -0.04 * np.nan_to_num(tenure, nan=30) + 0.02 * charges + (contract == "Month-to-month") - 1
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return {"tenure": tenure, "charges": charges, "senior": senior, "contract": contract}, y


@pytest.fixture(scope="module")
def pipeline() -> ScoringPipeline:
    cols, y = columns()
    pre = TabularPreprocessor(["tenure", "charges", "senior"], ["contract"]).fit(cols)
    model = LogisticRegression(C=0.5).fit(pre.transform(cols), y)
    return ScoringPipeline(
        pre, model, threshold=0.37, metadata={"dataset": "synthetic", "auc": 0.81, "tags": ["a", "b"], "n": 300}
    )


def test_pipeline_scores_through_its_preprocessor(pipeline):
    cols, _ = columns(50, seed=1)
    X = pipeline.transform(cols)
    np.testing.assert_array_equal(pipeline.predict_proba(cols), pipeline.model.predict_proba(X)[:, 1])
    p = pipeline.predict_proba(cols)
    assert p.shape == (50,) and p.dtype == np.float64
    assert np.all((p > 0) & (p < 1))
    assert pipeline.feature_names_in == ["tenure", "charges", "senior", "contract"]
    assert pipeline.feature_names_out == [
        "tenure",
        "charges",
        "senior",
        "contract=Month-to-month",
        "contract=One year",
        "contract=Two year",
    ]


def test_save_load_round_trip_gives_identical_probabilities(pipeline, tmp_path):
    path = pipeline.save(tmp_path / "model" / "pipeline.npz")
    assert path == tmp_path / "model" / "pipeline.npz" and path.is_file()
    back = ScoringPipeline.load(path)
    cols, _ = columns(200, seed=2)
    cols["contract"][:3] = "Ten year"  # unknown categories survive the round trip too
    np.testing.assert_array_equal(back.predict_proba(cols), pipeline.predict_proba(cols))
    assert back.threshold == 0.37
    assert back.metadata == {"dataset": "synthetic", "auc": 0.81, "tags": ["a", "b"], "n": 300}
    assert back.feature_names_in == pipeline.feature_names_in
    assert back.feature_names_out == pipeline.feature_names_out
    assert type(back.model) is LogisticRegression
    assert back.model.get_params() == pipeline.model.get_params()
    np.testing.assert_array_equal(back.model.coef_, pipeline.model.coef_)
    np.testing.assert_array_equal(back.preprocessor.median_, pipeline.preprocessor.median_)


def test_saved_header_carries_order_threshold_and_version(pipeline, tmp_path):
    path = pipeline.save(tmp_path / "p")  # suffix added
    assert path.name == "p.npz"
    header, arrays = load_npz(path)
    assert header["kind"] == "scoring_pipeline"
    assert header["format_version"] == FORMAT_VERSION
    assert header["threshold"] == 0.37
    assert header["feature_names_in"] == pipeline.feature_names_in
    assert header["feature_names_out"] == pipeline.feature_names_out
    assert header["model"]["class"] == "LogisticRegression"
    assert {"pre/median_", "pre/mean_", "pre/scale_"} <= set(arrays)
    assert all(a.dtype != object for a in arrays.values())
    # The file is a plain zip of .npy members, readable without pickle.
    with np.load(path, allow_pickle=False) as data:
        assert "__header__" in data.files
        assert json.loads(str(data["__header__"]))["kind"] == "scoring_pipeline"


def test_saving_is_deterministic_in_content(pipeline, tmp_path):
    a = load_npz(pipeline.save(tmp_path / "a.npz"))
    b = load_npz(pipeline.save(tmp_path / "b.npz"))
    assert a[0] == b[0]
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k])


def test_loading_a_bare_model_as_pipeline_is_refused(pipeline, tmp_path):
    path = pipeline.model.save(tmp_path / "model.npz")
    with pytest.raises(ArtifactError, match="not a scoring pipeline"):
        ScoringPipeline.load(path)


def test_unknown_model_class_is_refused(pipeline, tmp_path):
    header, arrays = load_npz(pipeline.save(tmp_path / "p.npz"))
    header["model"]["class"] = "os.system"
    save_npz(tmp_path / "evil.npz", header, arrays)
    with pytest.raises(ArtifactError, match="unknown model class"):
        ScoringPipeline.load(tmp_path / "evil.npz")


# ------------------------------------------------------------------ persistence
def test_save_npz_round_trip(tmp_path):
    arrays = {"w": np.arange(5.0), "names": np.array(["a", "bb"]), "i": np.array([1, 2], dtype=np.int64)}
    path = save_npz(tmp_path / "x.npz", {"kind": "test", "alpha": np.float64(0.5)}, arrays)
    header, back = load_npz(path)
    assert header == {"kind": "test", "alpha": 0.5, "format_version": FORMAT_VERSION}
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == v.dtype


def test_save_npz_refuses_object_arrays(tmp_path):
    with pytest.raises(ArtifactError, match="object dtype"):
        save_npz(tmp_path / "x.npz", {}, {"bad": np.array([{"a": 1}], dtype=object)})
    assert not (tmp_path / "x.npz").exists()


def test_load_refuses_file_without_header(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.arange(3.0))
    with pytest.raises(ArtifactError, match="no __header__ entry"):
        load_npz(path)


def test_load_refuses_other_format_version(tmp_path):
    path = tmp_path / "future.npz"
    header = {"kind": "scoring_pipeline", "format_version": FORMAT_VERSION + 1}
    np.savez(path, __header__=np.array(json.dumps(header)), w=np.arange(3.0))
    with pytest.raises(ArtifactError, match=f"format_version {FORMAT_VERSION + 1}"):
        load_npz(path)
    missing = tmp_path / "noversion.npz"
    np.savez(missing, __header__=np.array(json.dumps({"kind": "x"})))
    with pytest.raises(ArtifactError, match="format_version None"):
        load_npz(missing)


@pytest.mark.parametrize("doc", ["[1, 2]", "null", '"text"', "3"])
def test_load_refuses_header_that_is_not_an_object(tmp_path, doc):
    path = tmp_path / "odd.npz"
    np.savez(path, __header__=np.array(doc))
    with pytest.raises(ArtifactError, match="not a JSON object"):
        load_npz(path)


def test_load_refuses_header_that_is_not_json(tmp_path):
    path = tmp_path / "odd.npz"
    np.savez(path, __header__=np.array("{not json"))
    with pytest.raises(ArtifactError, match="unreadable artifact"):
        load_npz(path)


class _Payload:
    """Would run code when unpickled if the loader ever allowed pickle."""

    ran = False

    def __reduce__(self):
        return (_Payload._mark, ())

    @staticmethod
    def _mark():
        _Payload.ran = True
        return "pwned"


def test_load_refuses_pickled_object_array(tmp_path):
    path = tmp_path / "pickled.npz"
    header = json.dumps({"kind": "scoring_pipeline", "format_version": FORMAT_VERSION})
    evil = np.array([_Payload(), {"a": 1}], dtype=object)
    np.savez(path, allow_pickle=True, __header__=np.array(header), evil=evil)
    # The file really holds a pickle: numpy reads it back when explicitly allowed.
    with np.load(path, allow_pickle=True) as data:
        assert data["evil"].dtype == object
    _Payload.ran = False
    with pytest.raises(ArtifactError, match="unreadable artifact"):
        load_npz(path)
    assert _Payload.ran is False


def test_load_refuses_pickled_header(tmp_path):
    path = tmp_path / "pickled_header.npz"
    np.savez(path, allow_pickle=True, __header__=np.array([{"format_version": FORMAT_VERSION}], dtype=object))
    with pytest.raises(ArtifactError):
        load_npz(path)


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04truncated"])
def test_load_refuses_garbage(tmp_path, content):
    path = tmp_path / "garbage.npz"
    path.write_bytes(content)
    with pytest.raises(ArtifactError):
        load_npz(path)


def test_load_refuses_missing_file(tmp_path):
    with pytest.raises(ArtifactError):
        load_npz(tmp_path / "nope.npz")


def test_pipeline_load_refuses_pickled_artifact(tmp_path):
    path = tmp_path / "pickled.npz"
    header = json.dumps({"kind": "scoring_pipeline", "format_version": FORMAT_VERSION})
    np.savez(path, allow_pickle=True, __header__=np.array(header), evil=np.array([object()], dtype=object))
    with pytest.raises(ArtifactError):
        ScoringPipeline.load(path)


def test_sha256_file(tmp_path, pipeline):
    small = tmp_path / "small.bin"
    small.write_bytes(b"churn")
    assert sha256_file(small) == hashlib.sha256(b"churn").hexdigest()
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert sha256_file(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    # Larger than the 1 MiB read chunk.
    big = tmp_path / "big.bin"
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)
    big.write_bytes(data)
    assert sha256_file(big) == hashlib.sha256(data).hexdigest()
    art = pipeline.save(tmp_path / "p.npz")
    digest = sha256_file(art)
    assert digest == hashlib.sha256(Path(art).read_bytes()).hexdigest()
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert persistence.sha256_file(str(art)) == digest
