"""Small models with known gradient statistics, loaded by name as 'toy_models:<factory>'."""

import torch
import torch.nn as nn

SUPPORT = [0, 5, 10]  # the coordinates `selected_mlp` looks at


class Linear(nn.Module):
    """f(x) = a.x with a ~ N(0, I): gradient covariance I."""

    def __init__(self, dim):
        super().__init__()
        self.a = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        return (x.flatten(1) @ self.a)[:, None]


def linear_gaussian(in_channels, num_classes, input_size):
    return Linear(in_channels * input_size * input_size)


class Selected(nn.Module):
    """f(x) = g(P x), P the coordinate projection on SUPPORT, g a random tanh MLP."""

    def __init__(self):
        super().__init__()
        self.g = nn.Sequential(nn.Linear(len(SUPPORT), 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x):
        return self.g(x.flatten(1)[:, SUPPORT])


def selected_mlp(in_channels, num_classes, input_size):
    return Selected()


def smooth_mlp(in_channels, num_classes, input_size):
    d = in_channels * input_size * input_size
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 32), nn.Tanh(), nn.Linear(32, 1))


class InputTwice(nn.Module):
    """The raw input feeds the first conv *and* a skip connection: the
    first-layer shortcut must notice it does not apply."""

    def __init__(self, c, size):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.fc = nn.Linear(c * size * size, 1)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x) + x).flatten(1))


def input_twice(in_channels, num_classes, input_size):
    return InputTwice(in_channels, input_size)


def not_a_module(in_channels, num_classes, input_size):
    return "nope"


class TinyBN(nn.Module):
    """Conv, batch norm, pooling: the shape of the paper's CNNs at toy size."""

    def __init__(self, c, size, classes=1):
        super().__init__()
        self.conv = nn.Conv2d(c, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * (size // 2) ** 2, classes)

    def forward(self, x):
        return self.fc(nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2).flatten(1))


def tiny_bn(in_channels, num_classes, input_size):
    model = TinyBN(in_channels, input_size, num_classes)
    # Non-trivial running statistics, so that eval-mode batch norm matters.
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2)
    return model


def dies_once(in_channels, num_classes, input_size):
    """LeNet; but while $NADS_TEST_FAULTS/mode exists, the first call anywhere fails
    as that file says: 'exit' kills its process (a worker lost mid-sweep),
    'raise' raises. $NADS_TEST_FAULTS/fired records that it happened."""
    import os
    from pathlib import Path

    from nads.models import get_model

    faults = Path(os.environ["NADS_TEST_FAULTS"])
    if (faults / "mode").exists():
        try:
            os.close(os.open(faults / "fired", os.O_CREAT | os.O_EXCL))  # exactly one caller wins
        except FileExistsError:
            pass
        else:
            if (faults / "mode").read_text() == "exit":
                os._exit(1)
            raise RuntimeError("injected failure on the first attempt")
    return get_model("lenet", in_channels, num_classes, input_size)


# Broken user models, each failing nads.models.probe_model in its own way.
class _Returns(nn.Module):
    def __init__(self, forward):
        super().__init__()
        self.forward = forward


def returns_tuple(in_channels, num_classes, input_size):
    return _Returns(lambda x: (x.new_zeros(len(x), num_classes), x))


def returns_nan(in_channels, num_classes, input_size):
    return _Returns(lambda x: x.new_full((len(x), num_classes), float("nan")))


def returns_one_output(in_channels, num_classes, input_size):
    return _Returns(lambda x: x.new_zeros(len(x), 1))


def raises_when_built(in_channels, num_classes, input_size):
    raise ValueError("bad width\nsecond line of detail")


def one_channel_only(in_channels, num_classes, input_size):
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * input_size**2, num_classes))


def reporting_job(common, job):
    """A job that reports its progress in two halves and one step metric (executor tests)."""
    from nads.progress import advance, record

    advance(0.5)
    record({f"job{job}/value": common * job}, job)
    advance(0.5)
    return job


class LocalOps(nn.Module):
    """Every operation the local forward keeps local, with the geometry that is easy to get wrong:
    strided, dilated, grouped and asymmetric convolutions, odd poolings, sums of windows of
    different sizes, channel concatenation, scalar arithmetic."""

    def __init__(self, c, size):
        super().__init__()
        self.a = nn.Conv2d(c, 4, 3, stride=2, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2)
        self.c = nn.Conv2d(4, 4, (1, 3), padding=(0, 1), bias=False)
        self.skip = nn.Conv2d(c, 4, 1, stride=2)
        self.pool = nn.AvgPool2d(3, stride=2)
        side = ((size - 1) // 2 + 1 - 3) // 2 + 1
        self.fc = nn.Linear(8 * side * side, 1)

    def forward(self, x):
        h = torch.tanh(self.a(x))
        h = self.c(torch.relu(self.b(h))) * 0.5 + self.skip(x) - 1.0
        h = torch.cat([h, torch.sigmoid(h)], 1)
        return self.fc(self.pool(h).flatten(1))


def local_ops(in_channels, num_classes, input_size):
    return LocalOps(in_channels, input_size)


class Branchy(nn.Module):
    """A forward that branches on its input's values: torch.fx cannot trace it."""

    def __init__(self, c, size):
        super().__init__()
        self.conv = nn.Conv2d(c, 2, 3, padding=1)
        self.fc = nn.Linear(2 * size * size, 1)

    def forward(self, x):
        h = self.conv(x)
        if h.mean() > 0:
            h = -h
        return self.fc(torch.relu(h).flatten(1))


def branchy(in_channels, num_classes, input_size):
    return Branchy(in_channels, input_size)
