"""The book's networks (d2l_* presets) are the seed code's networks, to the parameter and output.

The oracle below is the seed code transcribed as it stands (shared/seeds/003_*.txt, section
2.2.2; the full-width VGG-11 `net = vgg(conv_arch)` is from 000_*.txt; the ResNeXt block from
004_*.txt). Only the training scaffolding around each network (`if __name__ == '__main__':`,
hyper-parameters, `.to(device)`) is left out; each network is wrapped in a function.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from conftest import SHIPPED_PRESETS, count_params, randomise_batch_norm, state_shapes
from torch import nn

from nas import build, load_spec
from nas.builder.blocks import ResidualBlock
from nas.cost import count_macs
from nas.families import ResNeXtSpec
from nas.io import preset_names
from nas.specs import ResidualStage

# ---------------------------------------------------------------------------------------------
# Oracle: the seed code, transcribed.
# ---------------------------------------------------------------------------------------------


def seed_alexnet() -> nn.Module:  # 003: 2.2.2.1. AlexNet
    net = nn.Sequential(
        nn.Conv2d(1, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(),
        nn.Linear(6400, 4096), nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 4096), nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 10)
    )
    return net


# 003: 2.2.2.2. VGG-11
def vgg_block(num_convs, in_channels, out_channels):
    """定义VGG块"""
    layers = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        layers.append(nn.ReLU())
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def vgg(conv_arch):
    """定义VGG网络"""
    vgg_blocks = []
    in_channels = 1
    out_channels = 0

    for num_convs, out_channels in conv_arch:
        vgg_blocks.append(vgg_block(num_convs, in_channels, out_channels))
        in_channels = out_channels

    return nn.Sequential(
        *vgg_blocks,
        nn.Flatten(),
        nn.Linear(out_channels * 7 * 7, 4096), nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 4096), nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 10),
    )


def seed_vgg11() -> nn.Module:  # 000: conv_arch = ((1,64), ...); net = vgg(conv_arch)
    conv_arch = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
    net = vgg(conv_arch)
    return net


def seed_vgg11_small() -> nn.Module:  # 003: the same with `ratio = 4`
    ratio = 4
    conv_arch = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
    small_conv_arch =  [(pair[0], pair[1] // ratio) for pair in conv_arch]  # noqa: E222
    net = vgg(small_conv_arch)
    return net


# 003: 2.2.2.3. NiN
def nin_block(in_channels, out_channels, kernel_size, strides, padding):
    """定义NiN块"""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU()
    )


def seed_nin() -> nn.Module:
    net = nn.Sequential(
        nin_block(1, 96, kernel_size=11, strides=4, padding=0),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nin_block(96, 256, kernel_size=5, strides=1, padding=2),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nin_block(256, 384, kernel_size=3, strides=1, padding=1),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Dropout(0.5),
        nin_block(384, 10, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten()
    )
    return net


# 003: 2.2.2.4. GoogLeNet
class Inception(nn.Module):
    # c1--c4是每条路径的输出通道数
    def __init__(self, in_channels, c1, c2, c3, c4, **kwargs):
        super(Inception, self).__init__(**kwargs)  # noqa: UP008
        # 线路1,单1x1卷积层
        self.p1_1 = nn.Conv2d(in_channels, c1, kernel_size=1)
        # 线路2,1x1卷积层后接3x3卷积层
        self.p2_1 = nn.Conv2d(in_channels, c2[0], kernel_size=1)
        self.p2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        # 线路3,1x1卷积层后接5x5卷积层
        self.p3_1 = nn.Conv2d(in_channels, c3[0], kernel_size=1)
        self.p3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        # 线路4,3x3最大汇聚层后接1x1卷积层
        self.p4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.p4_2 = nn.Conv2d(in_channels, c4, kernel_size=1)

    def forward(self, x):
        p1 = F.relu(self.p1_1(x))
        p2 = F.relu(self.p2_2(F.relu(self.p2_1(x))))
        p3 = F.relu(self.p3_2(F.relu(self.p3_1(x))))
        p4 = F.relu(self.p4_2(self.p4_1(x)))
        # 在通道维度上连结输出
        return torch.cat((p1, p2, p3, p4), dim=1)


def seed_googlenet() -> nn.Module:
    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3),
                   nn.ReLU(),
                   nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(nn.Conv2d(64, 64, kernel_size=1),
                   nn.ReLU(),
                   nn.Conv2d(64, 192, kernel_size=3, padding=1),
                   nn.ReLU(),
                   nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b3 = nn.Sequential(Inception(192, 64, (96, 128), (16, 32), 32),
                   Inception(256, 128, (128, 192), (32, 96), 64),
                   nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b4 = nn.Sequential(Inception(480, 192, (96, 208), (16, 48), 64),
                   Inception(512, 160, (112, 224), (24, 64), 64),
                   Inception(512, 128, (128, 256), (24, 64), 64),
                   Inception(512, 112, (144, 288), (32, 64), 64),
                   Inception(528, 256, (160, 320), (32, 128), 128),
                   nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b5 = nn.Sequential(Inception(832, 256, (160, 320), (32, 128), 128),
                   Inception(832, 384, (192, 384), (48, 128), 128),
                   nn.AdaptiveAvgPool2d((1,1)),
                   nn.Flatten())

    net = nn.Sequential(
        b1, b2, b3, b4, b5,
        nn.Linear(1024, 10)
    )
    return net


def seed_lenet_bn() -> nn.Module:  # 003: 2.2.2.5. 加入批量规范化层的LeNet
    net = nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5), nn.BatchNorm2d(6), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.BatchNorm2d(16), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2), nn.Flatten(),
        nn.Linear(256, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(),
        nn.Linear(84, 10)
    )
    return net


# 003: 2.2.2.6. ResNet
class Residual(nn.Module):
    def __init__(self, input_channels, num_channels,
                use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, num_channels,
                            kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels,
                            kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = nn.Conv2d(input_channels, num_channels,
                                kernel_size=1, stride=strides)
        else:
            self.conv3 = None
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        Y += X
        return F.relu(Y)


def resnet_block(input_channels, num_channels, num_residuals,
             first_block=False):
    blk = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.append(Residual(input_channels, num_channels,
                                use_1x1conv=True, strides=2))
        else:
            blk.append(Residual(num_channels, num_channels))
    return blk


def seed_resnet18() -> nn.Module:
    b1 = nn.Sequential(
        nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3),
        nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    )
    b2 = nn.Sequential(*resnet_block(64, 64, 2, first_block=True))
    b3 = nn.Sequential(*resnet_block(64, 128, 2))
    b4 = nn.Sequential(*resnet_block(128, 256, 2))
    b5 = nn.Sequential(*resnet_block(256, 512, 2))

    net = nn.Sequential(
        b1, b2, b3, b4, b5,
        nn.AdaptiveAvgPool2d((1,1)),
        nn.Flatten(), nn.Linear(512, 10)
    )
    return net


# 003: 2.2.2.7. DenseNet
def conv_block(input_channels, num_channels):
    return nn.Sequential(
        nn.BatchNorm2d(input_channels), nn.ReLU(),
        nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1)
    )


class DenseBlock(nn.Module):
    def __init__(self, num_convs, input_channels, num_channels):
        super(DenseBlock, self).__init__()  # noqa: UP008
        layer = []
        for i in range(num_convs):
            layer.append(conv_block(
                num_channels * i + input_channels, num_channels))
        self.net = nn.Sequential(*layer)

    def forward(self, X):
        for blk in self.net:
            Y = blk(X)
            # 连接通道维度上每个块的输入和输出
            X = torch.cat((X, Y), dim=1)
        return X


def transition_block(input_channels, num_channels):
    return nn.Sequential(
        nn.BatchNorm2d(input_channels), nn.ReLU(),
        nn.Conv2d(input_channels, num_channels, kernel_size=1),
        nn.AvgPool2d(kernel_size=2, stride=2)
    )


def seed_densenet() -> nn.Module:
    b1 = nn.Sequential(
        nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3),
        nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    )

    # num_channels为当前的通道数
    num_channels, growth_rate = 64, 32
    num_convs_in_dense_blocks = [4, 4, 4, 4]
    blks = []
    for i, num_convs in enumerate(num_convs_in_dense_blocks):
        blks.append(DenseBlock(num_convs, num_channels, growth_rate))
        # 上一个稠密块的输出通道数
        num_channels += num_convs * growth_rate
        # 在稠密块之间添加一个转换层,使通道数量减半
        if i != len(num_convs_in_dense_blocks) - 1:
            blks.append(transition_block(num_channels, num_channels // 2))
            num_channels = num_channels // 2

    net = nn.Sequential(
        b1, *blks,
        nn.BatchNorm2d(num_channels), nn.ReLU(),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(num_channels, 10)
    )
    return net


# 004: 8.6.5. ResNeXt
class ResNeXtBlock(nn.Module):  #@save
    """The ResNeXt block."""
    def __init__(self, num_channels, groups, bot_mul, use_1x1conv=False,
                 strides=1):
        super().__init__()
        bot_channels = int(round(num_channels * bot_mul))
        self.conv1 = nn.LazyConv2d(bot_channels, kernel_size=1, stride=1)
        self.conv2 = nn.LazyConv2d(bot_channels, kernel_size=3,
                                   stride=strides, padding=1,
                                   groups=bot_channels//groups)
        self.conv3 = nn.LazyConv2d(num_channels, kernel_size=1, stride=1)
        self.bn1 = nn.LazyBatchNorm2d()
        self.bn2 = nn.LazyBatchNorm2d()
        self.bn3 = nn.LazyBatchNorm2d()
        if use_1x1conv:
            self.conv4 = nn.LazyConv2d(num_channels, kernel_size=1,
                                       stride=strides)
            self.bn4 = nn.LazyBatchNorm2d()
        else:
            self.conv4 = None

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = F.relu(self.bn2(self.conv2(Y)))
        Y = self.bn3(self.conv3(Y))
        if self.conv4:
            X = self.bn4(self.conv4(X))
        return F.relu(Y + X)


# ---------------------------------------------------------------------------------------------
# The comparison.
# ---------------------------------------------------------------------------------------------

SEEDS: dict[str, Callable[[], nn.Module]] = {
    "d2l_alexnet": seed_alexnet,
    "d2l_vgg11": seed_vgg11,
    "d2l_vgg11_small": seed_vgg11_small,
    "d2l_nin": seed_nin,
    "d2l_googlenet": seed_googlenet,
    "d2l_lenet_bn": seed_lenet_bn,
    "d2l_resnet18": seed_resnet18,
    "d2l_densenet": seed_densenet,
}
# The seed networks' parameter counts, pinned so that the transcription itself cannot drift.
SEED_PARAMS = {
    "d2l_alexnet": 46_764_746,
    "d2l_vgg11": 128_806_154,
    "d2l_vgg11_small": 43_093_322,
    "d2l_nin": 1_992_166,
    "d2l_googlenet": 5_977_530,
    "d2l_lenet_bn": 44_878,
    "d2l_resnet18": 11_178_378,
    "d2l_densenet": 758_226,
}

# Residual registers conv1, conv2, conv3, bn1, bn2; nas registers in forward order.
RESIDUAL_ORDER = {"conv1": 0, "bn1": 1, "conv2": 2, "bn2": 3, "conv3": 4}
RESIDUAL_KEY = re.compile(r"^(\d+\.\d+)\.(conv1|bn1|conv2|bn2|conv3)\.")


def forward_order(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The seed state dict with each Residual's tensors in forward order (others unchanged)."""
    ranks = []
    for index, key in enumerate(state):
        match = RESIDUAL_KEY.match(key)
        if match is None:
            ranks.append((index, 0, index))
            continue
        first = next(i for i, k in enumerate(state) if k.startswith(match.group(1) + "."))
        ranks.append((first, RESIDUAL_ORDER[match.group(2)], index))
    keys = list(state)
    return {keys[i]: state[keys[i]] for *_, i in sorted(ranks)}


@pytest.fixture(scope="module", params=sorted(SEEDS))
def book(request: pytest.FixtureRequest) -> tuple[str, nn.Module, nn.Module]:
    """(preset name, the seed network, the nas network), both in eval mode, built once.

    The seed network gets storage only (meta device, then empty): its tensors are overwritten
    from the nas network before it computes anything.
    """
    name = request.param
    with torch.device("meta"):
        seed = SEEDS[name]()
    return name, seed.to_empty(device="cpu").eval(), build(name).eval()


def test_every_book_preset_has_its_seed_network() -> None:
    assert set(SEEDS) == set(SEED_PARAMS) == {n for n in SHIPPED_PRESETS if n.startswith("d2l_")}
    assert set(SEEDS) <= set(preset_names())
    for name in SEEDS:
        assert load_spec(name).in_channels == 1


def test_parameter_count_is_the_seed_codes(book: tuple[str, nn.Module, nn.Module]) -> None:
    name, seed, ours = book
    assert count_params(seed) == SEED_PARAMS[name]
    assert count_params(ours) == SEED_PARAMS[name]


def test_tensor_shapes_are_the_seed_codes(book: tuple[str, nn.Module, nn.Module]) -> None:
    _, seed, ours = book
    assert state_shapes(ours.state_dict()) == state_shapes(forward_order(seed.state_dict()))


def test_outputs_are_the_seed_codes(book: tuple[str, nn.Module, nn.Module]) -> None:
    name, seed, ours = book
    spec = load_spec(name)
    randomise_batch_norm(ours, torch.Generator().manual_seed(2))
    with torch.no_grad():  # nas's tensors into the seed's, position by position
        pairs = zip(forward_order(seed.state_dict()).values(), ours.state_dict().values())
        for target, source in pairs:
            target.copy_(source)
    x = torch.randn(2, 1, spec.input_size, spec.input_size)
    with torch.no_grad():
        expected, actual = seed(x), ours(x)
    assert actual.shape == expected.shape == (2, 10)
    assert expected.std() > 1e-3  # not a comparison of two constant outputs
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


# ResNeXt: the book's block takes `groups` as a group *width* and `bot_mul` as the ratio.
RESNEXT_CASES = [  # (bot_mul, group width): the book's example and a thinner bottleneck
    (1.0, 16),
    (0.5, 8),
]


def resnext_spec(bot_mul: float, group_width: int) -> ResNeXtSpec:
    """Two stages after a small stem: a 16->32 projection block, an identity block, then a
    strided 32->64 projection block; biased convs like the book's LazyConv2d."""
    return ResNeXtSpec(
        family="resnext", in_channels=3, num_classes=10, input_size=16,
        depths=(2, 1), widths=(32, 64), bottleneck_ratio=bot_mul, group_width=group_width,
        conv_bias=True, stem="small", stem_width=16,
    )


def block_tensors(block: ResNeXtBlock) -> list[torch.Tensor]:
    """The book block's tensors in forward order: conv1 bn1 conv2 bn2 conv3 bn3 [conv4 bn4]."""
    names = ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3"]
    names += ["conv4", "bn4"] if block.conv4 is not None else []
    return [t for n in names for t in getattr(block, n).state_dict().values()]


@pytest.mark.parametrize(("bot_mul", "group_width"), RESNEXT_CASES)
def test_resnext_spec_blocks_are_the_books_resnext_block(bot_mul: float, group_width: int) -> None:
    spec = resnext_spec(bot_mul, group_width)
    model = build(spec).eval()
    residual_stages = [m for s, m in zip(spec.lower().stages, model.stages) if s.kind == "residual"]
    blocks = [b for stage in residual_stages for b in stage]
    # (input channels, num_channels, use_1x1conv, strides, input size) of each block
    plan = [(16, 32, True, 1, 16), (32, 32, False, 1, 16), (32, 64, True, 2, 16)]
    assert len(blocks) == len(plan)
    generator = torch.Generator().manual_seed(3)
    for ours, (w_in, width, use_1x1conv, strides, size) in zip(blocks, plan):
        book = ResNeXtBlock(width, group_width, bot_mul, use_1x1conv=use_1x1conv, strides=strides)
        x = torch.randn(2, w_in, size, size, generator=generator)
        book(x)  # materialises the lazy modules
        book.eval()
        randomise_batch_norm(book, generator)
        assert count_params(ours) == count_params(book)
        theirs = block_tensors(book)
        assert [tuple(t.shape) for t in ours.state_dict().values()] == [
            tuple(t.shape) for t in theirs
        ]
        with torch.no_grad():
            for target, source in zip(ours.state_dict().values(), theirs, strict=True):
                target.copy_(source)
            expected, actual = book(x), ours(x)
        assert actual.shape == expected.shape == (2, width, size // strides, size // strides)
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_one_residual_block_is_the_books_example() -> None:
    """The book's `ResNeXtBlock(32, 16, 1)` on a (4, 32, 96, 96) input, as one nas block."""
    stage = ResidualStage(depth=1, width=32, block="bottleneck", bottleneck_ratio=1.0,
                          group_width=16, bias=True)
    ours = ResidualBlock(32, stage, stride=1).eval()
    book = ResNeXtBlock(32, 16, 1)
    x = torch.randn(4, 32, 96 // 4, 96 // 4)  # a smaller image; the block is size-agnostic
    book(x)
    book.eval()
    randomise_batch_norm(book, torch.Generator().manual_seed(4))
    assert count_params(ours) == count_params(book) == 6_944  # 1056 + 4640 + 1056 + 3 x 64
    assert ours.branch[1][0].groups == book.conv2.groups == 2
    with torch.no_grad():
        for target, source in zip(ours.state_dict().values(), block_tensors(book), strict=True):
            target.copy_(source)
        torch.testing.assert_close(ours(x), book(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_macs_are_the_seed_codes(name: str) -> None:
    spec = load_spec(name)
    with torch.device("meta"):  # MACs depend on shapes only
        seed, ours = SEEDS[name]().eval(), build(name).eval()
        x = torch.zeros(1, 1, spec.input_size, spec.input_size)
    assert count_macs(ours, x) == count_macs(seed, x) > 0
