"""The model zoo: small CIFAR-style CNNs and ImageNet-size ones (``resnet50``, ``mobilenetv2_imagenet``,
``vgg16_imagenet`` at 3x224x224, torchvision's layouts written here; no weights are downloaded) that
torch.fx can trace, plus user models by import path.

Every zoo model is written with only the ops :mod:`sim.model.flowgraph` understands (conv, linear, batch-norm,
ReLU/ReLU6, pooling, ``torch.flatten(x, 1)``, residual ``a + b``), so tracing never needs special cases.
Activations are never in-place, so per-node values recorded while running a traced model stay intact.
Construction draws weights from torch's global RNG and seeds nothing; callers that want reproducible
weights wrap :func:`build_model` in ``torch.random.fork_rng()`` + ``torch.manual_seed``.

Example::

    >>> model = build_model("resnet18")
    >>> INPUT_SHAPES["resnet18"]
    (3, 32, 32)
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sim.errors import UserError, first_line

__all__ = [
    "INPUT_SHAPES",
    "VGG",
    "BasicBlock",
    "Bottleneck",
    "ImageNetMobileNetV2",
    "ImageNetResNet",
    "ImageNetVGG",
    "InvertedResidual",
    "LeNet5",
    "MobileNetV2",
    "ResNet",
    "build_model",
    "model_names",
]


# -- LeNet-5 ----------------------------------------------------------------------------------------------
def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """A residual block's shortcut: identity (traces to nothing) when the shape is kept, else a strided 1x1
    conv and batch-norm."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes))


class LeNet5(nn.Module):
    """The classic PyTorch-tutorial LeNet for 1x32x32 images (``in_channels`` for other than grey ones)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, 32, 32) -> (B, num_classes) logits."""
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def scaled(channels: int, width: float, divisor: int = 1) -> int:
    """``channels * width`` rounded, at least 1 (``scaled(64, 1/8) == 8``); with ``divisor > 1``, rounded to
    a multiple of it by torchvision's ``_make_divisible`` rule (never more than 10 % below the exact value).
    Exactly ``channels`` when ``width == 1``."""
    if divisor == 1:
        return max(1, round(channels * width))
    value = channels * width
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


# -- VGG --------------------------------------------------------------------------------------------------
_VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def vgg_features(
    config: Sequence[int | str], in_channels: int, width: float, batch_norm: bool
) -> tuple[nn.Sequential, int]:
    """VGG's feature stack: per ``config`` item a 3x3 conv (``item`` channels times ``width``), batch-norm
    when ``batch_norm``, and ReLU, or a 2x2 max-pool for ``"M"``. Returns the stack and its output channels.

    Example::

        >>> stack, channels = vgg_features([8, "M", 16], 3, 1.0, batch_norm=False)
        >>> channels, len(stack)
        (16, 5)
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = scaled(int(item), width)
        layers += [nn.Conv2d(channels, out, 3, padding=1), *([nn.BatchNorm2d(out)] if batch_norm else []), nn.ReLU()]
        channels = out
    return nn.Sequential(*layers), channels


class VGG(nn.Module):
    """CIFAR VGG with batch-norm: 3x3 conv-BN-ReLU stacks, 2x2 max-pools, one linear classifier."""

    def __init__(
        self, config: Sequence[int | str], num_classes: int = 10, in_channels: int = 3, multiplier: float = 1.0
    ):
        super().__init__()
        self.features, channels = vgg_features(config, in_channels, multiplier, batch_norm=True)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) -> (B, num_classes) logits."""
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# -- ResNet -----------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual add; the shortcut is a 1x1 conv + BN when the shape changes."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class ResNet(nn.Module):
    """CIFAR ResNet: 3x3 stem without max-pool, four BasicBlock stages, global average pool, linear."""

    def __init__(self, num_blocks: Sequence[int], num_classes: int = 10, in_channels: int = 3, multiplier: float = 1.0):
        super().__init__()
        planes = [scaled(c, multiplier) for c in (64, 128, 256, 512)]
        self.in_planes = planes[0]
        self.conv1 = nn.Conv2d(in_channels, planes[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.layer1 = self._make_layer(planes[0], num_blocks[0], stride=1)
        self.layer2 = self._make_layer(planes[1], num_blocks[1], stride=2)
        self.layer3 = self._make_layer(planes[2], num_blocks[2], stride=2)
        self.layer4 = self._make_layer(planes[3], num_blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(planes[3] * BasicBlock.expansion, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        """One stage: the first block may downsample, the rest keep the shape."""
        layers: list[nn.Module] = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes * BasicBlock.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) -> (B, num_classes) logits."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = self.avgpool(out)
        out = torch.flatten(out, 1)
        return self.linear(out)


# -- MobileNetV2 ------------------------------------------------------------------------------------------
class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> project (1x1), BN after each, ReLU6 after the first two.

    The residual add is used only when ``stride == 1`` and the channel count is unchanged.
    """

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int):
        super().__init__()
        planes = expansion * in_planes
        self.use_residual = stride == 1 and in_planes == out_planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU6()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU6()
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output, plus ``x`` when the shapes match."""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.use_residual:  # a plain Python bool: fx resolves it at trace time
            out = out + x
        return out


class MobileNetV2(nn.Module):
    """CIFAR MobileNetV2 (stride-1 stem and second stage, so 32x32 inputs end at 4x4)."""

    # (expansion, out_planes, num_blocks, stride)
    CONFIG: tuple[tuple[int, int, int, int], ...] = (
        (1, 16, 1, 1),
        (6, 24, 2, 1),  # stride 2 in ImageNet MobileNetV2; 1 for CIFAR
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu1 = nn.ReLU6()
        blocks: list[nn.Module] = []
        in_planes = 32
        for expansion, out_planes, num_blocks, stride in self.CONFIG:
            for s in [stride] + [1] * (num_blocks - 1):
                blocks.append(InvertedResidual(in_planes, out_planes, expansion, s))
                in_planes = out_planes
        self.layers = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(in_planes, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.relu2 = nn.ReLU6()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) -> (B, num_classes) logits."""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.avgpool(out)
        out = torch.flatten(out, 1)
        return self.linear(out)


# -- ImageNet-size models (torchvision's layouts, 3x224x224) ---------------------------------------------
class Bottleneck(nn.Module):
    """ResNet-50's bottleneck (torchvision, stride on the 3x3): 1x1 -> 3x3 -> 1x1 (x4), BN after each, a
    residual add; the shortcut is a 1x1 conv + BN when the shape changes."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _shortcut(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(bn3(conv3(...)) + shortcut(x))."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class ImageNetResNet(nn.Module):
    """ImageNet ResNet with bottlenecks (ResNet-50: ``[3, 4, 6, 3]``): 7x7 stride-2 stem, 3x3 stride-2
    max-pool, four stages, global average pool, linear. ``width`` multiplies every channel count."""

    def __init__(self, num_blocks: Sequence[int], num_classes: int = 1000, width: float = 1.0, in_channels: int = 3):
        super().__init__()
        stem = scaled(64, width)
        self.conv1 = nn.Conv2d(in_channels, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages: list[nn.Module] = []
        in_planes = stem
        for i, blocks in enumerate(num_blocks):
            planes = scaled(64 * 2**i, width)
            layer: list[nn.Module] = []
            for s in [1 if i == 0 else 2] + [1] * (blocks - 1):
                layer.append(Bottleneck(in_planes, planes, s))
                in_planes = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) -> (B, num_classes) logits."""
        out = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = torch.flatten(self.avgpool(out), 1)
        return self.fc(out)


class ImageNetInvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block: expand (1x1, skipped when ``expansion == 1``) -> depthwise 3x3 ->
    project (1x1), BN after each, ReLU6 after the first two; residual add when the shape is kept."""

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int):
        super().__init__()
        planes = in_planes * expansion
        self.use_residual = stride == 1 and in_planes == out_planes
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(in_planes, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU6()]
        layers += [
            nn.Conv2d(planes, planes, 3, stride=stride, padding=1, groups=planes, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU6(),
            nn.Conv2d(planes, out_planes, 1, bias=False),
            nn.BatchNorm2d(out_planes),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output, plus ``x`` when the shapes match."""
        out = self.conv(x)
        if self.use_residual:  # a plain Python bool: fx resolves it at trace time
            out = out + x
        return out


class ImageNetMobileNetV2(nn.Module):
    """torchvision's MobileNetV2 for 224x224 images (stride-2 stem and second stage, ends at 7x7);
    ``width`` is its ``width_mult`` (channels rounded to multiples of 8)."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0, in_channels: int = 3):
        super().__init__()
        config = [(t, c, n, s) for t, c, n, s in MobileNetV2.CONFIG]
        config[1] = (6, 24, 2, 2)  # ImageNet: stride 2 in the second stage
        in_planes = scaled(32, width, 8)
        last = scaled(1280, max(1.0, width), 8)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, in_planes, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(in_planes),
            nn.ReLU6(),
        ]
        for expansion, channels, blocks, stride in config:
            out_planes = scaled(channels, width, 8)
            for s in [stride] + [1] * (blocks - 1):
                layers.append(ImageNetInvertedResidual(in_planes, out_planes, expansion, s))
                in_planes = out_planes
        layers += [nn.Conv2d(in_planes, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) -> (B, num_classes) logits."""
        out = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(self.dropout(out))


class ImageNetVGG(nn.Module):
    """torchvision's VGG without batch-norm: 3x3 conv-ReLU stacks, 2x2 max-pools, a 7x7 adaptive average
    pool and three linear layers (4096, 4096, classes) with ReLU and dropout. ``width`` multiplies the conv
    channels and the 4096-wide hidden layers."""

    def __init__(self, config: Sequence[int | str], num_classes: int = 1000, width: float = 1.0, in_channels: int = 3):
        super().__init__()
        self.features, channels = vgg_features(config, in_channels, width, batch_norm=False)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        hidden = scaled(4096, width)
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) -> (B, num_classes) logits."""
        out = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(out)


# -- registry ---------------------------------------------------------------------------------------------
# name -> factory(num_classes, width, in_channels)
_FACTORIES: dict[str, Callable[[int, float, int], nn.Module]] = {
    "lenet5": lambda n, w, c: LeNet5(n, in_channels=c),
    "vgg11": lambda n, w, c: VGG(_VGG_CONFIGS["vgg11"], n, in_channels=c, multiplier=w),
    "vgg16": lambda n, w, c: VGG(_VGG_CONFIGS["vgg16"], n, in_channels=c, multiplier=w),
    "resnet18": lambda n, w, c: ResNet([2, 2, 2, 2], n, in_channels=c, multiplier=w),
    "resnet34": lambda n, w, c: ResNet([3, 4, 6, 3], n, in_channels=c, multiplier=w),
    "mobilenetv2": lambda n, w, c: MobileNetV2(n, in_channels=c),
    "resnet50": lambda n, w, c: ImageNetResNet([3, 4, 6, 3], n, w, in_channels=c),
    "mobilenetv2_imagenet": lambda n, w, c: ImageNetMobileNetV2(n, w, in_channels=c),
    "vgg16_imagenet": lambda n, w, c: ImageNetVGG(_VGG_CONFIGS["vgg16"], n, w, in_channels=c),
}
# the models taking a channel multiplier (``model.width``): the CIFAR VGG and ResNet models and the
# ImageNet-size ones
_WIDE = frozenset({"vgg11", "vgg16", "resnet18", "resnet34", "resnet50", "mobilenetv2_imagenet", "vgg16_imagenet"})

INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "lenet5": (1, 32, 32),
    "vgg11": (3, 32, 32),
    "vgg16": (3, 32, 32),
    "resnet18": (3, 32, 32),
    "resnet34": (3, 32, 32),
    "mobilenetv2": (3, 32, 32),
    "resnet50": (3, 224, 224),
    "mobilenetv2_imagenet": (3, 224, 224),
    "vgg16_imagenet": (3, 224, 224),
}


def model_names() -> list[str]:
    """The zoo's model names, sorted."""
    return sorted(_FACTORIES)


def build_model(name: str, num_classes: int = 10, width: float = 1.0, in_channels: int | None = None) -> nn.Module:
    """A freshly initialised model: a zoo name, or a user model given as ``package.module:factory``.

    ``width`` multiplies every conv's channel count of the CIFAR-style VGG and ResNet models (rounded, at
    least 1): ``build_model("resnet18", width=1/8)`` has CaP's 20 convs with 8-64 channels. ``width`` also
    multiplies the channel counts of the ImageNet-size models (``resnet50``, ``mobilenetv2_imagenet``,
    ``vgg16_imagenet``; torchvision's ``width_mult`` rule for MobileNetV2). ``in_channels`` is the input
    image's channel count (the first of ``model.input_shape``; default: :data:`INPUT_SHAPES`'), so
    ``build_model("resnet18", in_channels=1)`` takes grey images.

    The user factory is called as ``factory(num_classes=...)`` when it accepts that keyword (or
    ``**kwargs``), else as ``factory()``; it must return an :class:`torch.nn.Module`. Every mistake is a
    one-line :class:`UserError` naming ``model.name`` (or ``model.num_classes``, ``model.width``).

    Example::

        >>> build_model("resnet18", in_channels=1).conv1.in_channels
        1
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise UserError(f"model.num_classes: must be a positive integer, got {num_classes!r}")
    if not width > 0 or width != width or width == float("inf"):
        raise UserError(f"model.width: must be a positive number, got {width!r}")
    if name in _FACTORIES:
        if width != 1.0 and name not in _WIDE:
            raise UserError(f"model.width: only {', '.join(sorted(_WIDE))} take a width; set 1 for '{name}'")
        channels = INPUT_SHAPES[name][0] if in_channels is None else in_channels
        return _FACTORIES[name](num_classes, float(width), channels)
    if width != 1.0:
        raise UserError(f"model.width: only {', '.join(sorted(_WIDE))} take a width; set 1 for '{name}'")
    if ":" not in name:
        raise UserError(
            f"model.name: unknown model '{name}'; choose one of {', '.join(model_names())} "
            "or give package.module:factory"
        )
    return _build_user_model(name, num_classes)


def _build_user_model(spec: str, num_classes: int) -> nn.Module:
    """Import ``package.module``, look up ``factory`` (dotted paths allowed) and call it."""
    module_name, _, attr_path = spec.partition(":")
    module_name, attr_path = module_name.strip(), attr_path.strip()
    if not module_name or not attr_path or ":" in attr_path:
        raise UserError(f"model.name: '{spec}' is not of the form package.module:factory")
    try:
        obj: object = importlib.import_module(module_name)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # ImportError, SyntaxError, sys.exit() at import
        raise UserError(f"model.name: cannot import module '{module_name}' ({first_line(exc)})") from None
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise UserError(f"model.name: module '{module_name}' has no attribute '{attr_path}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserError(f"model.name: '{spec}' is not callable (it is a {type(obj).__name__})")
    try:
        model = obj(num_classes=num_classes) if _accepts_num_classes(obj) else obj()
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # a user factory may call sys.exit()
        raise UserError(f"model.name: factory '{spec}' failed ({first_line(exc)})") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model.name: factory '{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _accepts_num_classes(factory: Callable[..., object]) -> bool:
    """Whether ``factory`` takes a ``num_classes`` keyword (named, or through ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    return any(
        (p.name == "num_classes" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) or p.kind == p.VAR_KEYWORD
        for p in params
    )
