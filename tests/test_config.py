from pathlib import Path

import pytest
import yaml

from nads import config
from nads.config import ParamError, Synthetic

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("raw, key, fragment", [
    ({"epsilon": 0}, "synthetic.epsilon = 0", "> 0"),
    ({"epsilon": -1.5}, "synthetic.epsilon = -1.5", "> 0"),
    ({"sigma": -0.1}, "synthetic.sigma = -0.1", ">= 0"),
    ({"n_train": 1}, "synthetic.n_train = 1", ">= 2"),
    ({"n_test": 1.5}, "synthetic.n_test = 1.5", "integer"),
    ({"fourier_stride": 3}, "synthetic.fourier_stride = 3", "dividing H/2 = 16 and W/2 = 16"),
    ({"fourier_stride": 0}, "synthetic.fourier_stride = 0", "dividing"),
    ({"epsilon": "big"}, "synthetic.epsilon = 'big'", "must be a number"),
    ({"epsilon": True}, "synthetic.epsilon = True", "must be a number"),
    ({"input_shape": [1, 32]}, "synthetic.input_shape = (1, 32)", "[C, H, W]"),
    ({"input_shape": [1, 31, 32]}, "synthetic.input_shape = (1, 31, 32)", "even"),
    ({"epsilonn": 1.0}, "synthetic.epsilonn = 1.0", "unknown key; allowed keys: input_shape, epsilon"),
])
def test_bad_values_give_one_line_naming_key_value_and_rule(raw, key, fragment):
    with pytest.raises(ParamError) as e:
        Synthetic.parse(raw)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(key) and fragment in msg


def test_good_values_are_normalised():
    s = Synthetic.parse({"epsilon": 2, "input_shape": [3, 16, 16], "fourier_stride": 8})
    assert s.epsilon == 2.0 and isinstance(s.epsilon, float)
    assert s.input_shape == (3, 16, 16)
    assert s.sigma == 3.0  # defaults are the paper's


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_profiles_validate_and_share_their_keys(profile):
    sections = config.check_all(ROOT / "profiles" / f"{profile}.yaml")
    assert config.profile(ROOT / "profiles" / f"{profile}.yaml") == profile
    quick = yaml.safe_load((ROOT / "profiles" / "quick.yaml").read_text())
    other = yaml.safe_load((ROOT / "profiles" / f"{profile}.yaml").read_text())
    assert {k: sorted(v) if isinstance(v, dict) else None for k, v in quick.items()} == \
           {k: sorted(v) if isinstance(v, dict) else None for k, v in other.items()}
    assert set(sections) == set(config.SECTIONS)


def test_file_level_errors(tmp_path):
    p = tmp_path / "params.yaml"
    with pytest.raises(ParamError, match="file not found"):
        config.load("synthetic", p)
    p.write_text("synthetic: [1, 2")
    with pytest.raises(ParamError, match="not valid YAML"):
        config.load("synthetic", p)
    p.write_text("profile: quick\nsynthtic: {}\n")
    with pytest.raises(ParamError, match="synthtic = {}: unknown section; allowed: cifar10, executor, flip, nads, poison, profile, ray, sweep, synthetic"):
        config.check_all(p)
    with pytest.raises(ParamError, match="synthetic: section missing"):
        config.load("synthetic", p)


@pytest.mark.parametrize("section, raw, message", [
    (config.Nads, {"precision": "fp16"}, "nads.precision = 'fp16': allowed: float32, tf32, bf16"),
    (config.Sweep, {"precision": "half"}, "sweep.precision = 'half': allowed: float32, tf32, bf16"),
    (config.Poison, {"device": "gpu"}, "poison.device = 'gpu': allowed: auto, cpu, cuda, cuda:N"),
])
def test_device_and_precision_are_checked(section, raw, message):
    with pytest.raises(ParamError, match=message.replace("(", r"\(")):
        section.parse(raw)
