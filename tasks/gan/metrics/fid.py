"""FID, KID and Inception Score from Inception features, plus cached reference statistics."""
from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, Iterable, Optional

import numpy as np
import torch
from torch import Tensor

from ...common.cache import building, load_entry, load_npz, save_entry, save_npz

FEATURE_DIM = 2048


@torch.no_grad()
def extract(network: torch.nn.Module, batches: Iterable[Tensor], device: torch.device,
            want_logits: bool = False, desc: Optional[str] = None, total: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Run images in [0, 1] through the Inception network; float64 numpy features (and logits). With
    ``desc``, a progress bar (``total`` images) on a terminal; none in logs or CI (tqdm's disable=None)."""
    from tqdm import tqdm
    feats, logits = [], []
    bar = tqdm(total=total, desc=desc, unit="img", disable=None if desc else True, leave=False)
    for images in batches:
        bar.update(len(images))
        out = network(images.to(device))
        feats.append(out["features"].double().cpu())
        if want_logits and "logits" in out:
            logits.append(out["logits"].double().cpu())
    bar.close()
    result = {"features": torch.cat(feats).numpy()}
    if logits:
        result["logits"] = torch.cat(logits).numpy()
    return result


def statistics(features: np.ndarray, warn: bool = True) -> Dict[str, np.ndarray]:
    """Mean and covariance (float64) of (N, D) features; warns when N < D (the estimate is biased)."""
    if warn and len(features) < features.shape[1]:
        warnings.warn(f"FID from {len(features)} samples < feature dimension {features.shape[1]}: the "
                      "covariance is rank-deficient and the FID is biased upwards; compare numbers only "
                      "at equal sample counts", stacklevel=2)
    return {"mu": features.mean(0), "sigma": np.cov(features, rowvar=False), "n": np.array(len(features))}


SQRTM = ("scipy", "newton_schulz")


def frechet_distance(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray], sqrtm: str = "scipy") -> float:
    """The Frechet distance of two Gaussians. ``sqrtm="scipy"``: pytorch-fid's (scipy sqrtm, with its
    fallback for singular products); ``"newton_schulz"``: 50 Newton-Schulz iterations in float32, the
    matrix square root of the official GAN code's torch FID."""
    if sqrtm == "scipy":
        return _frechet_scipy(a["mu"], a["sigma"], b["mu"], b["sigma"])
    if sqrtm != "newton_schulz":
        raise ValueError(f"unknown matrix square root '{sqrtm}'; use one of {SQRTM}")
    mu1, mu2 = torch.from_numpy(np.asarray(a["mu"])).float(), torch.from_numpy(np.asarray(b["mu"])).float()
    s1, s2 = torch.from_numpy(np.asarray(a["sigma"])).float(), torch.from_numpy(np.asarray(b["sigma"])).float()
    covmean = sqrtm_newton_schulz(s1 @ s2, 50)
    diff = mu1 - mu2
    return float(diff.dot(diff) + torch.trace(s1) + torch.trace(s2) - 2 * torch.trace(covmean))


def _frechet_scipy(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                   eps: float = 1e-6) -> float:
    """pytorch-fid 0.3's Frechet distance, value for value: scipy's sqrtm of sigma1 sigma2; if that is not
    finite, eps on both diagonals; an imaginary part on the diagonal above 1e-3 is an error, a smaller
    one is dropped. Reimplemented because pytorch-fid passes sqrtm's ``disp``, which SciPy deprecates
    and removes in 1.18 (a TypeError there), and its ``disp=False`` also costs a D x D product."""
    from scipy import linalg
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"FID of statistics of different dimensions: mu {mu1.shape} vs {mu2.shape}, sigma "
                         f"{sigma1.shape} vs {sigma2.shape}; both sides need features of the same network layer")
    diff = mu1 - mu2
    with warnings.catch_warnings():   # a singular product is handled below, as pytorch-fid does
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            warnings.warn(f"FID: the covariance product is singular; adding {eps} to the diagonals "
                          "(pytorch-fid's fallback)", stacklevel=3)
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: the matrix square root has an imaginary component up to "
                             f"{np.max(np.abs(covmean.imag)):.3g}; the covariances are not valid (too few "
                             "samples or non-finite features)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def sqrtm_newton_schulz(matrix: Tensor, iterations: int = 50) -> Tensor:
    """Square root of a matrix with a real non-negative spectrum by the coupled Newton-Schulz iteration
    (Higham 2008, eq. 6.35) on the Frobenius-normalised matrix; in the input's dtype."""
    norm = matrix.norm()
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype)
    y, z = matrix / norm, eye.clone()
    for _ in range(iterations):
        t = 0.5 * (3.0 * eye - z @ y)
        y, z = y @ t, t @ z
    return y * norm.sqrt()


def load_reference_statistics(path: str, dim: int = FEATURE_DIM) -> Dict[str, np.ndarray]:
    """A TTUR / pytorch-fid statistics file (``.npz`` with ``mu`` (D,) and ``sigma`` (D, D)), such as
    the official ``fid_stats_cifar10_train.npz``; read without pickle, checked, errors name the file."""
    from pathlib import Path
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"FID reference statistics not found at {file} (task.fid.reference_stats); give "
                         "an .npz with 'mu' and 'sigma', e.g. TTUR's fid_stats_cifar10_train.npz")
    try:
        with np.load(file, allow_pickle=False) as blob:
            stats = {k: blob[k] for k in ("mu", "sigma") if k in blob.files}
    except Exception as error:  # not a zip, truncated, object arrays: one message
        raise ValueError(f"cannot read FID reference statistics {file} ({type(error).__name__}: "
                         f"{str(error)[:120]}); it must be an .npz with arrays 'mu' and 'sigma'") from None
    if set(stats) != {"mu", "sigma"} or stats["mu"].shape != (dim,) or stats["sigma"].shape != (dim, dim):
        shapes = {k: v.shape for k, v in stats.items()}
        raise ValueError(f"{file} must hold mu ({dim},) and sigma ({dim}, {dim}) of Inception features "
                         f"(task.fid.dims={dim}); found {shapes or 'neither'}")
    if not (np.isfinite(stats["mu"]).all() and np.isfinite(stats["sigma"]).all()):
        raise ValueError(f"{file} holds non-finite values")
    return {k: v.astype(np.float64) for k, v in stats.items()}


def intra_class_fid(fake: Dict[int, np.ndarray], ref_features: np.ndarray, ref_labels: np.ndarray) -> Dict[str, object]:
    """Intra-class FID (Miyato & Koyama, 2018): the mean over classes c of FID(generated images of class c,
    reference images of class c). ``fake`` maps each class to its generated features."""
    per_class, smallest = [], None
    for c, feats in sorted(fake.items()):
        real = ref_features[ref_labels == c].astype(np.float64)
        if len(real) < 2 or len(feats) < 2:
            raise ValueError(f"intra-class FID needs >= 2 images of class {c} on both sides; the reference has "
                             f"{len(real)} and {len(feats)} were generated: raise task.fid.reference_count / "
                             "task.fid.intra_class_samples")
        smallest = min(len(real), len(feats), smallest or len(real))
        per_class.append(frechet_distance(statistics(feats, warn=False), statistics(real, warn=False)))
    if smallest is not None and smallest < ref_features.shape[1]:
        warnings.warn(f"intra-class FID from {smallest} images per class < feature dimension "
                      f"{ref_features.shape[1]}: biased upwards, compare only at equal counts", stacklevel=2)
    return {"intra_fid": float(np.mean(per_class)), "intra_fid_per_class": [round(v, 4) for v in per_class]}


def kid(x: np.ndarray, y: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> Dict[str, float]:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, over random subsets
    of ``min(subset_size, n)`` samples (torch-fidelity's protocol); mean and std over subsets."""
    n = min(len(x), len(y), subset_size)
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    values = []
    for _ in range(subsets):
        xs = x[rng.choice(len(x), n, replace=False)]
        ys = y[rng.choice(len(y), n, replace=False)]
        kxx = (xs @ xs.T / d + 1) ** 3
        kyy = (ys @ ys.T / d + 1) ** 3
        kxy = (xs @ ys.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (n * (n - 1)) - 2 * kxy.mean()
        values.append(mmd)
    return {"kid": float(np.mean(values)), "kid_std": float(np.std(values)), "kid_subset_size": n}


def inception_score(logits: np.ndarray, splits: int = 10) -> Dict[str, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))), mean and std over ``splits`` splits, from 1008-way logits."""
    logits = torch.from_numpy(logits).double()
    probs = logits.softmax(1)
    scores = []
    for part in probs.chunk(splits):
        marginal = part.mean(0, keepdim=True)
        kl = (part * (torch.log(part + 1e-20) - torch.log(marginal + 1e-20))).sum(1).mean()
        scores.append(math.exp(kl.item()))
    return {"is": float(np.mean(scores)), "is_std": float(np.std(scores))}


def batches_from(sample: Callable[[int], Tensor], total: int, batch_size: int) -> Iterable[Tensor]:
    """Yield ``total`` images from ``sample(n)`` in batches (images in [0, 1])."""
    done = 0
    while done < total:
        n = min(batch_size, total - done)
        yield sample(n)
        done += n


def reference_key(dataset: str, split: str, count: int, resolution: int, weights_source: str,
                  dims: int = FEATURE_DIM, layout: str = "nchw") -> str:
    """Cache key of reference statistics: data set, split, image count, resolution, weights, feature
    dimension and the network's memory layout (the defaults, 2048 and NCHW, add nothing: keys from
    before these options stay valid)."""
    tag = "".join(ch if ch.isalnum() else "-" for ch in weights_source)[:48]
    return (f"fidref_{dataset}_{split}_n{count}_r{resolution}_{tag}" + ("" if dims == FEATURE_DIM else f"_d{dims}")
            + ("" if layout == "nchw" else f"_{layout}"))


def load_or_compute_reference(key: str, compute: Callable[[], np.ndarray], cache) -> Dict[str, np.ndarray]:
    """Reference features' statistics, computed once and cached (features too, for KID); runs that need
    the same entry at the same time compute it once (the others wait for it)."""
    path = cache / f"{key}.npz"
    with building(path):
        stats = load_entry(path, load_npz)
        if stats is not None and {"mu", "sigma", "features"} <= stats.keys():
            return stats
        feats = compute()
        stats = {**statistics(feats), "features": feats.astype(np.float32)}
        save_entry(path, stats, save_npz)
        return stats


def optional_inception_score(logits: Optional[np.ndarray], source: str, splits: int = 10,
                             dims: int = FEATURE_DIM) -> Dict[str, object]:
    """The IS when the weights carry the 1008-way classifier; otherwise why it is unavailable."""
    if logits is None and dims != FEATURE_DIM:
        return {"is": None, "is_unavailable": f"task.fid.dims={dims}: the 1008-way classifier needs the "
                                              f"{FEATURE_DIM}-d pool3 features"}
    if logits is None:
        return {"is": None, "is_unavailable": f"the Inception weights in use ({source}) have no 1008-way "
                                              "classifier; IS needs pytorch-fid's pt_inception weights"}
    return inception_score(logits, splits)
