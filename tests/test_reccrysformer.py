"""RecCrysFormer network and loss (paper 000, sections 3 and 5): shapes, one-way attention, position
embeddings, FFT-convolution parity, Nystrom vs exact attention, loss terms and a small overfit."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from crysplugins.training.losses import density_loss, pearson_per_example  # noqa: E402
from crysplugins.training.nets.conv import CircularConv3d, set_fft  # noqa: E402
from crysplugins.training.nets.reccrysformer import (OneWayAttention, PositionEmbedding3D,  # noqa: E402
                                                    RecCrysFormer, nystrom_attention)

TINY = dict(d_t=32, heads=2, depth=2, d_ff=64, conv_channels=4, partial_channels=2, decoder_channels=4,
            attention="exact", landmarks=8, partial_box=8, max_residues=2, max_patches_per_axis=8)


def tiny(**kw):
    torch.manual_seed(0)
    m = RecCrysFormer({**TINY, **kw})
    if m.config["partial"]:
        m.set_residue_boxes(torch.rand(20, 8, 8, 8))
    return m


@pytest.mark.parametrize("shape", [(16, 16, 16), (8, 12, 20), (24, 16, 8)])
def test_output_shape_and_range(shape):
    m = tiny().eval()
    x = torch.randn(3, 1, *shape)
    s = torch.randint(0, 20, (3, 2))
    with torch.no_grad():
        y = m(x, s)
    assert y.shape == (3, 1, *shape)
    assert float(y.abs().max()) < 1.0
    assert float(y.std()) > 0


def test_bad_shapes_are_refused():
    m = tiny()
    with pytest.raises(ValueError, match="multiple of the patch"):
        m(torch.randn(1, 1, 16, 16, 18), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="at most"):
        m(torch.randn(1, 1, 36, 16, 16), torch.zeros(1, 2, dtype=torch.long))


def test_two_input_channels_for_recycling():
    m = tiny(in_channels=2).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 2, 16, 16, 16), torch.zeros(2, 2, dtype=torch.long)).shape == (2, 1, 16, 16, 16)


def test_every_parameter_is_initialised_and_finite():
    m = tiny()
    for name, p in m.named_parameters():
        assert torch.isfinite(p).all(), name
        if p.dim() >= 2:
            assert float(p.detach().std()) > 0, name  # no weight left at zero / constant


def test_fft_convolution_matches_direct():
    torch.manual_seed(1)
    for k, cin, cout in ((7, 1, 5), (5, 3, 3), (3, 2, 1)):
        conv = CircularConv3d(cin, cout, k)
        x = torch.randn(2, cin, 12, 16, 20)
        direct = conv(x)
        conv.use_fft = True
        fft = conv(x)
        assert torch.allclose(direct, fft, atol=1e-5), (k, float((direct - fft).abs().max()))
    m = tiny().eval()
    x, s = torch.randn(2, 1, 16, 16, 24), torch.randint(0, 20, (2, 2))
    with torch.no_grad():
        a = m(x, s)
        set_fft(m, True)
        b = m(x, s)
    assert float((a - b).abs().max()) < 1e-5


def test_convolution_is_circular():
    conv = CircularConv3d(1, 1, 3)
    x = torch.randn(1, 1, 8, 8, 8)
    rolled = conv(torch.roll(x, shifts=(3, -2, 5), dims=(2, 3, 4)))
    assert torch.allclose(rolled, torch.roll(conv(x), shifts=(3, -2, 5), dims=(2, 3, 4)), atol=1e-6)


def test_position_embedding_means_the_same_position_for_every_shape():
    pe = PositionEmbedding3D(8, 6)
    torch.nn.init.normal_(pe.e1), torch.nn.init.normal_(pe.e2), torch.nn.init.normal_(pe.e3)
    small = pe(2, 3, 4).reshape(2, 3, 4, 6)
    big = pe(4, 4, 4).reshape(4, 4, 4, 6)
    assert torch.allclose(small, big[:2, :3, :4])
    # and not merely a function of the flattened token number
    flat_small = pe(2, 3, 4)
    assert not torch.allclose(flat_small[12], big.reshape(-1, 6)[12])  # (1,0,0) vs (0,3,0)


def test_partial_tokens_never_make_queries_and_stay_fixed():
    m = tiny()
    seen = {"q_lengths": [], "u": []}

    def q_hook(mod, inp):
        seen["q_lengths"].append(inp[0].shape[1])

    def layer_hook(mod, inp):
        seen["u"].append(inp[1].detach().clone())

    for layer in m.layers:
        layer.attn.q.register_forward_pre_hook(q_hook)
        layer.register_forward_pre_hook(layer_hook)
    x = torch.randn(2, 1, 16, 16, 16)
    s = torch.randint(0, 20, (2, 2))
    m(x, s)
    n_patterson_tokens = (16 // 4) ** 3
    n_partial = 2 * (8 // 4) ** 3
    assert seen["q_lengths"] == [n_patterson_tokens] * len(m.layers)
    assert all(u.shape[1] == n_partial for u in seen["u"])
    assert all(torch.equal(seen["u"][0], u) for u in seen["u"][1:])  # same tokens in every layer


def test_one_way_attention_uses_partial_keys_and_values():
    torch.manual_seed(0)
    att = OneWayAttention(16, 2, "exact", 4, 6, partial=True, dropout=0.0)
    x = torch.randn(1, 10, 16)
    u = torch.randn(1, 6, 16, requires_grad=True)
    out = att(x, u)
    assert out.shape == (1, 10, 16)  # one output per Patterson token, none for partial tokens
    out.sum().backward()
    assert float(u.grad.abs().sum()) > 0  # partial tokens feed keys/values
    # the partial tokens' own values never change: attention returns nothing for them
    assert torch.allclose(att(x, u), out)


def test_nystrom_equals_exact_with_one_landmark_per_token():
    torch.manual_seed(0)
    q = torch.randn(1, 2, 16, 8)
    k = torch.randn(1, 2, 16, 8)
    v = torch.randn(1, 2, 16, 8)
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    approx = nystrom_attention(q, k, v, landmarks=16, iterations=20)
    assert float((exact - approx).abs().max()) < 1e-3
    rough = nystrom_attention(q, k, v, landmarks=4)
    assert rough.shape == exact.shape and torch.isfinite(rough).all()


def test_loss_terms():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.normal(size=(3, 1, 8, 8, 8)).astype(np.float32))
    b = torch.from_numpy(rng.normal(size=(3, 1, 8, 8, 8)).astype(np.float32))
    pc = pearson_per_example(a, b)
    ref = [np.corrcoef(a[i].numpy().ravel(), b[i].numpy().ravel())[0, 1] for i in range(3)]
    assert np.allclose(pc.numpy(), ref, atol=1e-5)
    loss, m = density_loss(a, a, c_mse=0.9999, c_p=5e-5)
    assert m["mse"] == 0 and abs(m["pearson"] - 1) < 1e-5 and abs(m["fft_pearson"] - 1) < 1e-5
    assert abs(float(loss) + 2 * 5e-5) < 1e-7
    loss2, m2 = density_loss(-a, a, c_mse=1.0, c_p=0.01)
    assert abs(m2["pearson"] + 1) < 1e-5
    assert abs(m2["fft_pearson"] - 1) < 1e-5  # |FFT(-e)| = |FFT(e)|
    assert abs(float(loss2) - (m2["mse"] + 0.01 - 0.01)) < 1e-4
    _, m3 = density_loss(b, a, c_mse=1.0, c_p=0.0)
    assert abs(m3["mse"] - float(((a - b) ** 2).mean())) < 1e-6


def test_tiny_model_overfits_a_handful_of_examples():
    from crysplugins.training.synthetic import _blur

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    dens = np.stack([_blur(rng.normal(6, 1.5, size=(6, 3)), (12, 12, 12)) for _ in range(4)])
    dens = dens / np.abs(dens).max()
    patt = np.stack([np.fft.irfftn(np.abs(np.fft.rfftn(d)) ** 2, s=d.shape, axes=(0, 1, 2)) for d in dens])
    patt = patt / np.abs(patt).max()
    x = torch.from_numpy(patt[:, None].astype(np.float32))
    y = torch.from_numpy(dens[:, None].astype(np.float32))
    s = torch.from_numpy(rng.integers(0, 20, (4, 2)))
    m = tiny(use_fft=True)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(120):
        loss, _ = density_loss(m(x, s), y, c_mse=1.0, c_p=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])
