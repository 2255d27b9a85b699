"""The GAN models' spectral norm: torch's numbers and state dict, and a discriminator compiled with
inductor survives two calls before one backward (torch's own parametrization fails there)."""
import torch
from torch.nn.utils.parametrizations import spectral_norm as torch_spectral_norm

from tasks.gan.models.spectral import spectral_norm


def _pair():
    layers = []
    for wrap in (spectral_norm, torch_spectral_norm):
        torch.manual_seed(0)
        layers.append(wrap(torch.nn.Conv2d(3, 5, 3)))
    return layers


def test_same_numbers_buffers_and_keys_as_torch():
    ours, ref = _pair()
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 3, 6, 6)
    for _ in range(3):   # training mode: one power iteration per call
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-6, atol=1e-6)
    for name, buf in ours.named_buffers():
        torch.testing.assert_close(buf, dict(ref.named_buffers())[name], rtol=1e-6, atol=1e-6)
    ours.eval(), ref.eval()
    x.requires_grad_()
    out_ours, out_ref = ours(x), ref(x)
    torch.testing.assert_close(out_ours, out_ref, rtol=1e-6, atol=1e-6)
    grads = [torch.autograd.grad(o.square().sum(), m.parametrizations.weight.original)[0]
             for o, m in ((out_ours, ours), (out_ref, ref))]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_compiled_discriminator_called_twice_then_backward():
    torch._dynamo.reset()
    torch.manual_seed(0)
    d = torch.nn.Sequential(spectral_norm(torch.nn.Conv2d(3, 4, 1)), torch.nn.ReLU(), torch.nn.Flatten(),
                            spectral_norm(torch.nn.Linear(4 * 4 * 4, 1)))
    compiled = torch.compile(d)   # inductor: where torch's parametrization fails
    x_real, x_fake = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    loss = torch.relu(1 - compiled(x_real)).mean() + torch.relu(1 + compiled(x_fake)).mean()
    loss.backward()
    grad = d[0].parametrizations.weight.original.grad
    assert grad is not None and torch.isfinite(grad).all()
