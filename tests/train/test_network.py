"""The embedding network: shape, budget, BatchNorm folding, Siamese sharing, binary head."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from facegate.models.flops import count_cost, count_parameters  # noqa: E402
from facegate.models.network import (  # noqa: E402
    BinaryHead,
    FaceEmbeddingNet,
    NetConfig,
    SiameseNetwork,
    Stage,
    fold_batchnorm,
    net_config_from_dict,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")

MAX_PARAMS = 1_500_000
MAX_FLOPS = 0.25e9  # counted as 2 x MACs


@pytest.fixture(scope="module")
def net() -> FaceEmbeddingNet:
    torch.manual_seed(0)
    return FaceEmbeddingNet().eval()


def _randomise_bn(model: nn.Module, seed: int = 1) -> None:
    """Give every BatchNorm non-trivial statistics and affine terms, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def test_output_shape_and_unit_norm(net):
    with torch.no_grad():
        out = net(torch.randn(3, 3, 112, 112))
    assert out.shape == (3, 128)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)


def test_budget_params_and_flops(net):
    report = count_cost(net)
    assert report.params == count_parameters(net)
    assert report.params <= MAX_PARAMS, report.summary()
    assert report.flops == 2 * report.macs
    assert report.flops <= MAX_FLOPS, report.summary()


def test_cost_counter_on_a_hand_counted_model():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.Flatten(), nn.Linear(8 * 10 * 10, 7))
    r = count_cost(model, (1, 3, 10, 10))
    # 100 px x 8 out x 27 + 100 px x 8 out x 9 (depthwise) + 800 x 7
    assert r.macs == 100 * 8 * 27 + 100 * 8 * 9 + 800 * 7
    assert [layer.kind for layer in r.layers] == ["Conv2d", "Conv2d", "Linear"]


def test_relu_not_prelu_and_config_checks():
    kinds = {type(m) for m in FaceEmbeddingNet(NetConfig(activation="relu6")).modules()}
    assert nn.ReLU6 in kinds and nn.PReLU not in kinds
    with pytest.raises(ValueError):
        NetConfig(activation="prelu")


def test_fold_batchnorm_preserves_outputs():
    torch.manual_seed(0)
    model = FaceEmbeddingNet()
    _randomise_bn(model)
    model.eval()
    folded = fold_batchnorm(model)
    x = torch.randn(4, 3, 112, 112)
    with torch.no_grad():
        ref, out, raw_ref, raw = model(x), folded(x), model.forward_raw(x), folded.forward_raw(x)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    assert torch.allclose(raw, raw_ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(out, ref, atol=1e-4)


def test_fold_batchnorm_refuses_a_stray_batchnorm():
    with pytest.raises(ValueError, match="not preceded"):
        fold_batchnorm(nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3)))


def test_siamese_shares_one_set_of_weights(net):
    siamese = SiameseNetwork(net)
    assert siamese.net is net
    assert count_parameters(siamese) == count_parameters(net)
    a, b, c = torch.randn(2, 3, 112, 112), torch.randn(2, 3, 112, 112), torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        ea, eb = siamese(a, b)
        ta, tb, tc = siamese(a, b, c)
        assert torch.allclose(ea, net(a), atol=1e-5) and torch.allclose(eb, net(b), atol=1e-5)
        assert tc.shape == (1, 128) and torch.allclose(ta, ea, atol=1e-5)
    with pytest.raises(ValueError):
        siamese(a)


def test_siamese_gradients_from_both_branches_reach_the_same_weights():
    torch.manual_seed(0)
    small = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    siamese = SiameseNetwork(small)
    a, b = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2)
    ea, eb = siamese(a, b)
    eb.sum().backward()
    grad_b = small[1].weight.grad.clone()
    small.zero_grad()
    small(b).sum().backward()
    assert torch.allclose(grad_b, small[1].weight.grad)


def test_binary_head_probabilities():
    head = BinaryHead(128)
    a = torch.nn.functional.normalize(torch.randn(5, 128), dim=1)
    b = torch.nn.functional.normalize(torch.randn(5, 128), dim=1)
    assert torch.allclose(head(a, b), torch.full((5,), 0.5))  # zero-initialised
    torch.nn.init.normal_(head.linear.weight)
    p = head(a, b)
    assert p.shape == (5,) and torch.all((p > 0) & (p < 1))
    assert torch.allclose(head(a, b), head(b, a))  # |f(a) - f(b)| is symmetric
    m = head.to_manifest(threshold=0.6)
    assert len(m.weights) == 128 and m.threshold == 0.6
    w = torch.tensor(m.weights)
    assert torch.allclose(torch.sigmoid((a - b).abs() @ w + m.bias), p, atol=1e-6)


def test_net_config_from_dict_round_trips_and_names_bad_keys():
    import dataclasses

    cfg = NetConfig(embedding_dim=64, stages=(Stage(1, 16, 1, 2), Stage(2, 32, 2, 2)), dropout=0.1)
    assert net_config_from_dict(dataclasses.asdict(cfg)) == cfg
    assert net_config_from_dict({"stages": [[1, 16, 1, 2], {"expansion": 2, "channels": 32, "repeats": 2,
                                                          "stride": 2}]}).stages == cfg.stages
    assert net_config_from_dict({}) == NetConfig()
    with pytest.raises(ValueError, match="unknown key.*widht"):
        net_config_from_dict({"widht": 2})
    with pytest.raises(ValueError, match="stages"):
        net_config_from_dict({"stages": [[1, 16]]})
    with pytest.raises(ValueError, match="activation"):
        net_config_from_dict({"activation": "prelu"})
