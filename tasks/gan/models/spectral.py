"""Spectral norm for the GAN models: torch's parametrization, made safe for ``torch.compile``.

``torch.nn.utils.parametrizations.spectral_norm`` updates its ``u``, ``v`` buffers in place during
the power iteration. Compiled with inductor, a discriminator called twice before one backward (real,
then fake: the hinge loss) then fails with "one of the variables needed for gradient computation
has been modified by an inplace operation" (eager mode is fine): the compiled graph keeps the
buffers themselves for backward. ``SpectralNorm`` runs the power iteration eagerly and gives the
graph fresh copies of ``u`` and ``v``. Buffers, state-dict keys and numbers are torch's (tested),
so checkpoints load either way.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm


UPDATES = ("torch", "hook")


class SpectralNorm(_SpectralNorm):
    """torch's ``_SpectralNorm`` whose power iteration runs outside the compiled graph and hands the
    graph fresh copies of ``u``, ``v``.

    ``update="torch"``: the parametrization's behaviour (15 power iterations at registration, then
    ``u = Wv, v = W^T u`` per step). ``update="hook"``: the hook-based ``torch.nn.utils.spectral_norm``
    that the official SNGAN / AutoGAN code uses (no iterations at registration, ``v = W^T u, u = Wv``
    per step), so a run starts from the official state; the same random draws for ``u``, ``v``.
    """

    def __init__(self, weight: Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12,
                 update: str = "torch") -> None:
        if update not in UPDATES:
            raise ValueError(f"spectral norm update '{update}' is not one of {UPDATES}")
        # Read by _power_method while the parent's __init__ runs its warm-up iterations.
        object.__setattr__(self, "update", update)
        object.__setattr__(self, "_registering", True)   # until spectral_norm() has registered it
        super().__init__(weight, n_power_iterations, dim, eps)

    @torch.no_grad()
    def _power_method(self, weight_mat: Tensor, n_power_iterations: int):
        u, v = self._u, self._v
        if self.update == "hook":
            for _ in range(0 if self._registering else n_power_iterations):
                v = F.normalize(torch.mv(weight_mat.H, u), dim=0, eps=self.eps)
                u = F.normalize(torch.mv(weight_mat, v), dim=0, eps=self.eps)
        else:
            for _ in range(n_power_iterations):   # the same order and formulas as torch's
                u = F.normalize(torch.mv(weight_mat, v), dim=0, eps=self.eps)
                v = F.normalize(torch.mv(weight_mat.H, u), dim=0, eps=self.eps)
        self._u.copy_(u)
        self._v.copy_(v)
        return u.clone(), v.clone()

    # Inside a compiled graph inductor may write the new vectors straight into the buffers and keep
    # them for backward; run eagerly (a graph break per layer, a few small ops) so it cannot.
    _iterate = torch.compiler.disable(_power_method)

    def forward(self, weight: Tensor) -> Tensor:
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        weight_mat = self._reshape_weight_to_matrix(weight)
        if self.training:
            u, v = self._iterate(weight_mat.detach(), self.n_power_iterations)
        else:
            u, v = self._u.clone(), self._v.clone()
        return weight / torch.vdot(u, torch.mv(weight_mat, v))


def spectral_norm(module: nn.Module, n_power_iterations: int = 1, eps: float = 1e-12,
                  update: str = "torch") -> nn.Module:
    """``torch.nn.utils.parametrizations.spectral_norm`` with ``SpectralNorm`` (dim 0: conv, linear,
    embedding weights)."""
    sn = SpectralNorm(module.weight, n_power_iterations, 0, eps, update)
    # Registration evaluates the parametrization once (a power iteration in training mode); the
    # hook-based update does none before the first real forward.
    parametrize.register_parametrization(module, "weight", sn)
    sn._registering = False
    return module


def apply_spectral_norm(module: nn.Module, kinds=(nn.Conv2d, nn.Linear, nn.Embedding), update: str = "torch") -> None:
    """Spectral norm (one power iteration per step) on every layer of the given kinds; after init."""
    for m in list(module.modules()):
        if isinstance(m, kinds):
            spectral_norm(m, update=update)


@torch.no_grad()
def refresh_spectral_norm(module: nn.Module, iters: int = 10) -> None:
    """Re-run the power iteration of every spectral-normed weight on its current value.

    An EMA copy's ``u``, ``v`` come from the live weights (or are averages that are no longer unit
    vectors), and in eval mode spectral norm uses the stored vectors as they are.
    """
    for m in module.modules():
        plist = getattr(getattr(m, "parametrizations", None), "weight", None)
        for p in plist or ():
            if isinstance(p, _SpectralNorm) and hasattr(p, "_u"):
                p._power_method(p._reshape_weight_to_matrix(plist.original), iters)
