"""Recycling (paper 000, section 4): weight transfer into a two-channel first conv, the template channel
(choice between prediction and refined template, Gaussian noise on the template channel only)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from crysplugins.datasets.template_store import TEMPLATE_CHANNEL, choose_templates, with_template

torch = pytest.importorskip("torch", reason="weight transfer needs torch (the training extra)")

from crysplugins.training.nets.reccrysformer import RecCrysFormer  # noqa: E402
from crysplugins.training.recycling import (add_template_noise, recycled_model_config,  # noqa: E402
                                            template_inputs, transfer_weights)

TINY = dict(conv_channels=6, conv_kernel=3, d_t=16, heads=2, depth=1, d_ff=32, attention="exact",
            partial=True, partial_channels=2, partial_box=8, max_residues=2, decoder_channels=4,
            decoder_kernel=3, max_patches_per_axis=4)


def _trained_like(seed: int = 1) -> RecCrysFormer:
    """A one-channel model whose weights are far from any fresh initialisation (stands in for a trained run)."""
    torch.manual_seed(seed)
    m = RecCrysFormer({**TINY, "in_channels": 1})
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.5 + 0.3)
        m.residue_boxes.normal_()
    return m


def _fresh(seed: int = 7) -> tuple[RecCrysFormer, dict]:
    torch.manual_seed(seed)
    m = RecCrysFormer(recycled_model_config({**TINY, "in_channels": 1}))
    return m, {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_first_recycling_run_transfers_the_patterson_half_of_the_first_conv_exactly():
    prev = _trained_like().state_dict()
    new, fresh = _fresh()
    assert new.embed.conv.weight.shape[1] == 2
    report = transfer_weights(new, prev, noise_std=0.0)
    w = new.embed.conv.weight.detach()
    # Patterson channel (and bias): the previous weights, exactly (no noise asked for)
    assert torch.equal(w[:, 0], prev["embed.conv.weight"][:, 0])
    assert torch.equal(new.embed.conv.bias.detach(), prev["embed.conv.bias"])
    # template channel: the fresh initialisation, bit for bit, and not the previous weights
    assert torch.equal(w[:, TEMPLATE_CHANNEL], fresh["embed.conv.weight"][:, TEMPLATE_CHANNEL])
    assert report.first_conv["fraction_transferred"] == 0.5
    # every other tensor is the previous run's
    for name, t in new.state_dict().items():
        if name.startswith("embed.conv."):
            continue
        assert torch.equal(t, prev[name]), name


def test_transferred_weights_are_previous_plus_small_gaussian_noise():
    prev = _trained_like().state_dict()
    new, fresh = _fresh()
    transfer_weights(new, prev, noise_std=0.02, seed=3)
    state = new.state_dict()
    for name, t in state.items():
        p = prev[name]
        if name == "embed.conv.weight":
            assert torch.equal(t[:, 1], fresh[name][:, 1])      # still untouched by noise
            t, p = t[:, 0], p[:, 0]
        if name == "residue_boxes":                            # buffers: copied, no noise
            assert torch.equal(t, p)
            continue
        diff = (t - p).flatten()
        rms = float(p.pow(2).mean().sqrt())
        assert not torch.equal(t, p), f"{name} got no noise"
        assert float(diff.abs().max()) < 6 * 0.02 * rms, name  # small: within 6 sigma
        if diff.numel() >= 200:                                 # and Gaussian with the asked-for std
            assert abs(float(diff.std()) / (0.02 * rms) - 1) < 0.25, name
            assert abs(float(diff.mean())) < 4 * 0.02 * rms / math.sqrt(diff.numel()), name


def test_half_filters_mode_and_later_recycling_runs():
    prev = _trained_like().state_dict()
    new, fresh = _fresh()
    report = transfer_weights(new, prev, noise_std=0.0, first_conv="half-filters")
    w = new.embed.conv.weight.detach()
    c = w.shape[0]
    half = math.ceil(c / 2)
    assert torch.equal(w[:half, 0], prev["embed.conv.weight"][:half, 0])
    assert torch.equal(w[half:], fresh["embed.conv.weight"][half:])
    assert torch.equal(w[:, 1], fresh["embed.conv.weight"][:, 1])
    assert torch.equal(new.embed.conv.bias[half:].detach(), fresh["embed.conv.bias"][half:])
    assert report.first_conv["fraction_transferred"] == pytest.approx(half / (2 * c))
    # a second recycling run starts from a two-channel model: everything is transferred
    newer, _ = _fresh(seed=11)
    report2 = transfer_weights(newer, new.state_dict(), noise_std=0.0)
    assert torch.equal(newer.embed.conv.weight, new.embed.conv.weight)
    assert report2.first_conv["fraction_transferred"] == 1.0


def test_transfer_refuses_another_architecture():
    prev = _trained_like().state_dict()
    torch.manual_seed(0)
    other = RecCrysFormer({**TINY, "in_channels": 2, "d_t": 32})
    with pytest.raises(ValueError, match="shape"):
        transfer_weights(other, prev)
    torch.manual_seed(0)
    no_partial = RecCrysFormer({**TINY, "in_channels": 2, "partial": False})
    with pytest.raises(ValueError, match="does not match"):
        transfer_weights(no_partial, prev)


def test_noise_goes_to_the_template_channel_only():
    rng = np.random.default_rng(0)
    pat = rng.uniform(-1, 1, (4, 8, 8, 8)).astype(np.float32)
    tpl = rng.uniform(-1, 1, (4, 8, 8, 8)).astype(np.float32)
    x = with_template(pat, tpl)
    assert x.shape == (4, 2, 8, 8, 8)
    y = add_template_noise(x, 0.05, rng=np.random.default_rng(1))
    assert np.array_equal(y[:, 0], pat)
    d = y[:, TEMPLATE_CHANNEL] - tpl
    assert abs(d.std() - 0.05) < 0.005 and abs(d.mean()) < 0.005
    assert np.array_equal(x[:, 1], tpl)  # the input is not modified in place
    xt = torch.as_tensor(x)
    yt = add_template_noise(xt, 0.05, generator=torch.Generator().manual_seed(0))
    assert torch.equal(yt[:, 0], xt[:, 0])
    assert abs(float((yt[:, 1] - xt[:, 1]).std()) - 0.05) < 0.005
    with pytest.raises(ValueError, match="channel"):
        add_template_noise(x[:, :1], 0.05)


@pytest.mark.parametrize("p", [0.7, 1.0 / 6.0])
def test_refined_template_replaces_the_prediction_with_probability_p(p):
    n = 20000
    rng = np.random.default_rng(5)
    is_refined = rng.random(n) < 0.8
    pred = np.zeros((n, 1, 1, 1), np.float32)
    refined = np.ones((n, 1, 1, 1), np.float32)
    out, used = choose_templates(pred, refined, is_refined, p, np.random.default_rng(6))
    assert not used[~is_refined].any()                       # never a refined map that does not exist
    assert np.array_equal(out[:, 0, 0, 0] == 1, used)        # the template is the one reported
    k, m = used[is_refined].sum(), is_refined.sum()
    sigma = math.sqrt(p * (1 - p) / m)
    assert abs(k / m - p) < 4 * sigma, (k / m, p)
    # evaluation (rng=None): every refined example takes its refined template (section 5)
    out_eval, used_eval = choose_templates(pred, refined, is_refined, p, None)
    assert np.array_equal(used_eval, is_refined)


def test_template_inputs_add_noise_in_training_only():
    rng = np.random.default_rng(0)
    pat = rng.uniform(-1, 1, (3, 4, 4, 4)).astype(np.float32)
    t = {"prediction": np.zeros((3, 4, 4, 4), np.float16), "refined": np.ones((3, 4, 4, 4), np.float16),
         "is_refined": np.array([True, False, True])}
    x_eval, used = template_inputs(pat, t, 1.0 / 6.0, 0.05, None)
    assert used.tolist() == [True, False, True]
    assert np.array_equal(x_eval[:, 1], np.stack([np.ones((4, 4, 4)), np.zeros((4, 4, 4)), np.ones((4, 4, 4))]))
    x_train, _ = template_inputs(pat, t, 0.0, 0.05, np.random.default_rng(1))
    assert np.array_equal(x_train[:, 0], pat)
    assert 0.03 < float(x_train[:, 1].std()) < 0.07
