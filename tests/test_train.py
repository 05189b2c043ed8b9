import numpy as np
import pytest
import torch

from nads.config import Synthetic
from nads.directions import fourier_directions
from nads.sweep import direction_batches, sweep
from nads.synthetic import draw_noise_bank
from nads.train import Schedule, init_model, train_batched, train_sequential


@pytest.fixture(scope="module")
def bank():
    return draw_noise_bank(Synthetic(input_shape=(1, 16, 16), n_train=300, n_test=200, fourier_stride=4, seed=1))


def tensors(bank, split):
    z, y = bank.split(split)
    return torch.from_numpy(z), torch.from_numpy(y.astype(np.float32))


def sequential_accuracy(arch, bank, directions, schedule):
    """The plain loop, one model per direction: torch.optim.SGD, clip_grad_norm_, LambdaLR."""
    z, y = tensors(bank, "train")
    zt, yt = tensors(bank, "test")
    accs = []
    for k, v in enumerate(torch.from_numpy(directions)):
        model = init_model(arch, k, schedule, 1, 2, 16)
        model = train_sequential(model, direction_batches(z, y, v[None], bank), len(z), schedule, "cpu")
        x, labels = direction_batches(zt, yt, v[None], bank)(torch.arange(len(zt)))
        with torch.no_grad():
            accs.append((model(x[0]).argmax(-1) == labels[0]).double().mean().item())
    return np.array(accs)


@pytest.mark.parametrize("arch", ["lenet", "toy_models:tiny_bn"])
@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 5e-4)])
def test_batched_engine_matches_sequential_training(bank, arch, momentum, weight_decay):
    _, v = fourier_directions((1, 16, 16), 4)
    v = v[[0, 3, 7]]
    schedule = Schedule(epochs=2, batch_size=64, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    batched = sweep(arch, bank, v, schedule, "cpu", models_per_batch=3)
    np.testing.assert_allclose(batched["test_acc"], sequential_accuracy(arch, bank, v, schedule), atol=1e-12)
    # Grouping does not matter either.
    regrouped = sweep(arch, bank, v, schedule, "cpu", models_per_batch=2)
    np.testing.assert_array_equal(regrouped["test_acc"], batched["test_acc"])


def test_a_diverging_classifier_is_recorded_and_the_rest_go_on():
    bank = draw_noise_bank(Synthetic(input_shape=(1, 8, 8), n_train=400, n_test=400, seed=1))
    _, v = fourier_directions((1, 8, 8), 2)
    v = v[:3].copy()
    healthy = sweep("logreg", bank, v, Schedule(epochs=5, batch_size=64), "cpu", models_per_batch=3)
    v[1] = np.nan  # this classifier's data, hence its loss, is NaN
    r = sweep("logreg", bank, v, Schedule(epochs=5, batch_size=64), "cpu", models_per_batch=3)
    assert np.isnan(r["test_acc"][1]) and np.isnan(r["train_acc"][1])
    assert np.all(r["test_acc"][[0, 2]] > 0.9)
    np.testing.assert_array_equal(r["test_acc"][[0, 2]], healthy["test_acc"][[0, 2]])  # untouched


def test_lr_decays_linearly_to_zero_per_step():
    s = Schedule(lr=0.5)
    assert [s.lr_at(t, 4) for t in range(4)] == [0.5, 0.375, 0.25, 0.125]
    assert s.steps_per_epoch(300) == 3


def test_models_have_their_own_seeded_initialisation():
    s = Schedule(seed=0)
    a, b, a2 = (init_model("lenet", i, s, 1, 2, 32) for i in (0, 1, 0))
    assert torch.equal(a.conv1.weight, a2.conv1.weight)
    assert not torch.equal(a.conv1.weight, b.conv1.weight)


def test_trained_models_are_tested_in_eval_mode(bank):
    # With batch norm, train-mode statistics of a single test sample would make
    # predictions depend on the batch; eval mode must not.
    _, v = fourier_directions((1, 16, 16), 4)
    vt = torch.from_numpy(v[:2])
    z, y = tensors(bank, "train")
    models = [init_model("toy_models:tiny_bn", i, Schedule(), 1, 2, 16) for i in range(2)]
    trained = train_batched(models, direction_batches(z, y, vt, bank), len(z), Schedule(epochs=1), "cpu")
    x, _ = direction_batches(z, y, vt, bank)(torch.arange(40))
    whole = trained.predict(x)
    parts = torch.cat([trained.predict(x[:, i : i + 1]) for i in range(40)], 1)
    torch.testing.assert_close(whole, parts)
