"""Tests for the model zoo: shapes, fx tracing, allowed ops, parameter counts and user models."""

from __future__ import annotations

import operator
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from sim.errors import UserError
from sim.model.zoo import INPUT_SHAPES, build_model, model_names

ZOO = ["lenet5", "mobilenetv2", "resnet18", "resnet34", "vgg11", "vgg16"]

ALLOWED_MODULES = (
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm2d,
    nn.BatchNorm1d,
    nn.ReLU,
    nn.ReLU6,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Dropout,
    nn.Flatten,
)
ALLOWED_FUNCTIONS = {F.relu, F.max_pool2d, F.avg_pool2d, torch.flatten, operator.add, torch.cat}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def traced() -> dict[str, tuple[nn.Module, fx.GraphModule]]:
    """Every zoo model (eval mode, fixed seed) with its fx trace, built once for the module."""
    out = {}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for name in ZOO:
            model = build_model(name).eval()
            out[name] = (model, fx.symbolic_trace(model))
    return out


IMAGENET = ["mobilenetv2_imagenet", "resnet50", "vgg16_imagenet"]


def test_model_names_and_input_shapes() -> None:
    assert model_names() == sorted(ZOO + IMAGENET)
    assert set(INPUT_SHAPES) == set(ZOO + IMAGENET)
    assert all(INPUT_SHAPES[n] == (3, 224, 224) for n in IMAGENET)
    assert INPUT_SHAPES["lenet5"] == (1, 32, 32)
    assert all(INPUT_SHAPES[n] == (3, 32, 32) for n in ZOO if n != "lenet5")


@pytest.mark.parametrize("name", ZOO)
def test_forward_shape_and_trace_matches(name: str, traced: dict) -> None:
    model, gm = traced[name]
    x = torch.randn(2, *INPUT_SHAPES[name], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
        y_traced = gm(x)
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y_traced, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ZOO)
def test_traced_graph_uses_only_allowed_ops(name: str, traced: dict) -> None:
    _, gm = traced[name]
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        assert node.op in ("placeholder", "output", "call_module", "call_function"), (node.op, node.target)
        if node.op == "call_module":
            assert isinstance(modules[node.target], ALLOWED_MODULES), (node.target, type(modules[node.target]))
        elif node.op == "call_function":
            assert node.target in ALLOWED_FUNCTIONS, (node.name, node.target)
            if node.target is torch.flatten:
                assert node.args[1:2] == (1,) or node.kwargs.get("start_dim") == 1
            if node.target is torch.cat:
                assert node.args[1:2] == (1,) or node.kwargs.get("dim") == 1


def test_num_classes_is_respected() -> None:
    for name in ("lenet5", "vgg11", "resnet18", "mobilenetv2"):
        model = build_model(name, num_classes=3)
        with torch.no_grad():
            assert model(torch.zeros(2, *INPUT_SHAPES[name])).shape == (2, 3)
    with pytest.raises(UserError, match=r"model\.num_classes"):
        build_model("lenet5", num_classes=0)


def test_build_uses_caller_rng_without_reseeding() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(123)
        a = build_model("resnet18")
        b = build_model("resnet18")  # continues the stream: if anything inside seeded, a == b
        torch.manual_seed(123)
        c = build_model("resnet18")
    assert not torch.equal(a.layer1[0].conv1.weight, b.layer1[0].conv1.weight)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


def test_lenet5_structure_and_parameter_count() -> None:
    model = build_model("lenet5")
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert names == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    expected = (6 * 1 * 25 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert expected == 61_706
    assert _params(model) == expected


def test_vgg11_parameter_count_by_hand() -> None:
    config = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
    expected, c_in = 0, 3
    for c in config:
        if c == "M":
            continue
        expected += c * c_in * 9 + c  # 3x3 conv weight + bias
        expected += 2 * c  # batch-norm weight + bias (running stats are buffers)
        c_in = c
    expected += 512 * 10 + 10
    model = build_model("vgg11")
    assert _params(model) == expected == 9_231_114
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 8


def test_resnet18_parameter_count_and_names() -> None:
    model = build_model("resnet18")
    assert _params(model) == 11_173_962
    names = dict(model.named_modules())
    for n in ("conv1", "bn1", "layer1.0.conv1", "layer1.0.bn1", "layer2.0.shortcut.0", "layer4.1.conv2", "linear"):
        assert n in names, n
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert isinstance(names["layer2.0.shortcut.0"], nn.Conv2d) and names["layer2.0.shortcut.0"].stride == (2, 2)
    assert len(names["layer1.0.shortcut"]) == 0  # identity shortcut


def test_resnet34_stages() -> None:
    model = build_model("resnet34")
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]


def test_mobilenetv2_has_depthwise_conv() -> None:
    model = build_model("mobilenetv2")
    depthwise = [
        m
        for m in model.modules()
        if isinstance(m, nn.Conv2d) and m.groups == m.in_channels == m.out_channels and m.groups > 1
    ]
    assert depthwise
    assert model.linear.in_features == 1280


# -- user models ------------------------------------------------------------------------------------------
USER_MODULE = """
from torch import nn


def factory(num_classes=10):
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes)
    )


def no_args():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 2))


def not_a_module():
    return 42


def raises(num_classes=10):
    raise RuntimeError("boom\\nsecond line")
"""


@pytest.fixture()
def user_pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package ``zoo_user_pkg.mod`` on sys.path; removed from sys.modules afterwards."""
    pkg = tmp_path / "zoo_user_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(USER_MODULE)
    (pkg / "broken.py").write_text("import nosuch_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "zoo_user_pkg"
    for key in [k for k in sys.modules if k.startswith("zoo_user_pkg")]:
        del sys.modules[key]


def test_user_model_factory_with_num_classes(user_pkg: str) -> None:
    model = build_model(f"{user_pkg}.mod:factory", num_classes=7)
    assert isinstance(model, nn.Module)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 7)


def test_user_model_factory_without_args(user_pkg: str) -> None:
    model = build_model(f"{user_pkg}.mod:no_args", num_classes=7)
    assert model[1].out_features == 2


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            "lenet6",
            r"^model\.name: unknown model 'lenet6'; choose one of lenet5, mobilenetv2, mobilenetv2_imagenet, "
            r"resnet18, resnet34, resnet50, vgg11, vgg16, vgg16_imagenet or give package\.module:factory$",
        ),
        ("nosuchmod:f", r"^model\.name: cannot import module 'nosuchmod'"),
        ("sim.model.zoo:nosuch", r"^model\.name: module 'sim\.model\.zoo' has no attribute 'nosuch'"),
        ("sim.model.zoo:INPUT_SHAPES", r"^model\.name: .*not callable"),
        (":f", r"^model\.name: .*package\.module:factory"),
        ("sim.model.zoo:", r"^model\.name: .*package\.module:factory"),
    ],
)
def test_bad_specs_give_one_line_user_error(spec: str, match: str) -> None:
    with pytest.raises(UserError, match=match) as info:
        build_model(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("attr", "match"),
    [
        ("mod:not_a_module", r"returned int, not a torch\.nn\.Module"),
        ("mod:raises", r"failed \(RuntimeError: boom\)"),
        ("broken:f", r"cannot import module 'zoo_user_pkg\.broken' \(ModuleNotFoundError"),
    ],
)
def test_bad_user_factories_give_one_line_user_error(user_pkg: str, attr: str, match: str) -> None:
    with pytest.raises(UserError, match=match) as info:
        build_model(f"{user_pkg}.{attr}")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("model.name: ")


# torchvision's published parameter counts for 1000 classes (torchvision.models docs: resnet50,
# mobilenet_v2, vgg16), an independent source for the layouts written in sim.model.zoo.
TORCHVISION_PARAMS = {"resnet50": 25_557_032, "mobilenetv2_imagenet": 3_504_872, "vgg16_imagenet": 138_357_544}


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_models_match_torchvision_parameter_counts(name: str) -> None:
    assert _params(build_model(name, num_classes=1000)) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_models_trace_at_224(name: str) -> None:
    from sim.model.flowgraph import FlowGraph

    model = build_model(name, num_classes=10, width=0.25).eval()
    x = torch.zeros(1, *INPUT_SHAPES[name])
    graph = FlowGraph.trace(model, x)
    assert graph.node(graph.order[-1]).channels == 10
    assert model(x).shape == (1, 10)


def test_width_scales_channels_by_hand() -> None:
    half = build_model("resnet50", num_classes=10, width=0.5)
    assert (half.conv1.out_channels, half.fc.in_features) == (32, 1024)  # 64/2 and 2048/2
    thin = build_model("mobilenetv2_imagenet", num_classes=10, width=0.5)
    # width_mult 0.5: stem 32*0.5 = 16; the last conv stays 1280 (max(1, width) * 1280)
    assert (thin.features[0].out_channels, thin.classifier.in_features) == (16, 1280)
    # 0.35 * 24 = 8.4 -> 8; torchvision's _make_divisible keeps it (8 >= 0.9 * 8.4)
    assert build_model("mobilenetv2_imagenet", width=0.35).features[4].conv[-2].out_channels == 8
    with pytest.raises(UserError, match=r"model\.width: only .*resnet50.* take a width; set 1 for 'lenet5'"):
        build_model("lenet5", width=0.5)
    with pytest.raises(UserError, match=r"^model\.width"):
        build_model("resnet50", width=0)


@pytest.mark.parametrize("name", model_names())
def test_every_zoo_model_takes_its_input_channels(name: str) -> None:
    """build_model(in_channels=c) builds a model that runs on c-channel images of the model's size (at width
    1/8 where the model takes a width, to stay small)."""
    width = 1.0 if name in ("lenet5", "mobilenetv2") else 1 / 8
    for channels in (1, 2):
        model = build_model(name, width=width, in_channels=channels).eval()
        with torch.no_grad():
            out = model(torch.zeros(1, channels, *INPUT_SHAPES[name][1:]))
        assert out.shape == (1, 10)


def test_resnet18_on_grey_16x16_images_runs_from_the_scenario() -> None:
    """The issue's case, end to end: resnet18 with model.input_shape [1, 16, 16] (and [2, 16, 16]) runs, and
    only the first conv's FLOPs change with the channels, doubling (2 * filters * channels * k * k * H * W)."""
    import sim
    from tests.helpers import scenario_dict

    flops = []
    for channels in (1, 2):
        data = scenario_dict(2, model={"name": "resnet18", "input_shape": [channels, 16, 16], "width": 0.125})
        data["inputs"] = {"dataset": "synthetic", "batch_size": 1, "frames": 1}
        result = sim.run(data)
        flops.append(result.compute.groupby("layer", sort=False)["flops"].sum().to_dict())
    changed = {layer: (flops[0][layer], flops[1][layer]) for layer in flops[0] if flops[0][layer] != flops[1][layer]}
    assert list(changed) == ["conv1"]
    assert changed["conv1"][1] == 2 * changed["conv1"][0] == 2 * (2 * 8 * 1 * 3 * 3 * 16 * 16)


def test_channel_mismatch_names_input_shape_and_the_fix() -> None:
    """A model whose first conv takes 3 channels, fed 1: one line naming model.input_shape and the shape
    that fits, not torch's words."""
    from sim.errors import UserError
    from sim.model.flowgraph import FlowGraph

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    with pytest.raises(UserError) as info:
        FlowGraph.trace(model, torch.zeros(1, 1, 32, 32))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("model.input_shape: [1, 32, 32] gives 1 channel(s)")
    assert "set model.input_shape: [3, 32, 32]" in message
    assert "expected input" not in message  # torch's own words
