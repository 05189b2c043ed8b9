import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nads import config
from nads.config import Synthetic
from nads.errors import ParamError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "raw, key, fragment",
    [
        ({"epsilon": 0}, "synthetic.epsilon = 0", "> 0"),
        ({"epsilon": -1.5}, "synthetic.epsilon = -1.5", "> 0"),
        ({"sigma": -0.1}, "synthetic.sigma = -0.1", ">= 0"),
        ({"n_train": 1}, "synthetic.n_train = 1", ">= 2"),
        ({"n_test": 1.5}, "synthetic.n_test = 1.5", "integer"),
        ({"fourier_stride": 3}, "synthetic.fourier_stride = 3", "dividing H/2 = 16 and W/2 = 16"),
        ({"fourier_stride": 0}, "synthetic.fourier_stride = 0", "dividing"),
        ({"epsilon": "big"}, "synthetic.epsilon = 'big'", "must be a number"),
        ({"epsilon": True}, "synthetic.epsilon = True", "must be a number"),
        ({"input_shape": [1, 32]}, "synthetic.input_shape = [1, 32]", "[C, H, W]"),
        ({"input_shape": [1, 31, 32]}, "synthetic.input_shape = [1, 31, 32]", "even"),
        ({"epsilonn": 1.0}, "synthetic.epsilonn = 1.0", "unknown key; allowed keys: input_shape, epsilon"),
        ({"epsilon": float("inf")}, "synthetic.epsilon = inf", "must be a finite number"),
        ({"sigma": float("nan")}, "synthetic.sigma = nan", "must be a finite number"),
        ({"sigma": 10**400}, "synthetic.sigma = 1000", "must be a finite number"),
        ({"n_train": 2**70}, "synthetic.n_train = 1180591620717411303424", "fits in 64 bits"),
        ({"seed": 2**32}, "synthetic.seed = 4294967296", "0 <= seed < 2**32"),
        ({"seed": -1}, "synthetic.seed = -1", "0 <= seed < 2**32"),
    ],
)
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


@pytest.mark.parametrize("profile", sorted(p.stem for p in (ROOT / "profiles").glob("*.yaml")))
def test_profiles_validate_and_share_their_keys(profile):
    params = config.load(ROOT / "profiles" / f"{profile}.yaml")
    assert params.profile == profile
    quick = yaml.safe_load((ROOT / "profiles" / "quick.yaml").read_text())
    other = yaml.safe_load((ROOT / "profiles" / f"{profile}.yaml").read_text())
    assert {k: sorted(v) if isinstance(v, dict) else None for k, v in quick.items()} == {
        k: sorted(v) if isinstance(v, dict) else None for k, v in other.items()
    }
    assert set(params.sections) == set(config.SECTIONS)


def test_file_level_errors(tmp_path):
    p = tmp_path / "params.yaml"
    with pytest.raises(ParamError, match="file not found"):
        config.load(p)
    p.write_text("profile: quick\nsynthetic:\n  epsilon: 1.0\n  sigma: [3.0\n")
    with pytest.raises(ParamError) as e:
        config.load(p)
    assert "not valid YAML (line 5, column 1:" in str(e.value) and "\n" not in str(e.value)
    p.write_text("profile: quick\nsynthtic: {}\n")
    with pytest.raises(
        ParamError,
        match="synthtic = {}: unknown section; allowed: archs, device, executor, flip, "
        "models_per_batch, nad_sweep, nads, poison, profile, ray, sweep, synthetic",
    ):
        config.load(p)
    p.write_text("profile: quick\n")
    with pytest.raises(ParamError, match="^synthetic: section missing from params.yaml$"):
        config.load(p)["synthetic"]


@pytest.mark.parametrize(
    "section, key", [("nads", "step"), ("sweep", "lr"), ("sweep", "weight_decay"), ("poison", "epsilon")]
)
def test_no_number_read_from_params_may_be_infinite(tmp_path, section, key):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(_profile(**{section: {key: float("inf")}})))
    with pytest.raises(ParamError, match=rf"^{section}\.{key} = inf: must be a finite number$"):
        config.load(p)


def test_duplicate_keys_and_sections_are_refused_as_dvc_refuses_them(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("profile: quick\nsynthetic:\n  epsilon: 1.0\n  epsilon: 2.0\n")
    with pytest.raises(ParamError, match=r'not valid YAML \(line 4, column 3: found duplicate key "epsilon"'):
        config.load(p)
    p.write_text("profile: quick\nsynthetic: {}\nnads: {}\nsynthetic: {}\n")
    with pytest.raises(ParamError, match=r'not valid YAML \(line 4, column 1: found duplicate key "synthetic"'):
        config.load(p)


def test_a_file_that_is_not_utf8_or_expands_without_bound_is_one_line(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_bytes(b"profile: quick\nsynthetic:\n  epsilon: 1.0 # \xff\n")
    with pytest.raises(ParamError, match=r"params.yaml: not UTF-8 text \(line 3, byte 43\); save it as UTF-8$"):
        config.load(p)
    # A "billion laughs" alias tree: 9^8 leaves if written out; the message shows a few.
    lines = ["profile: quick", "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ParamError) as e:
        config.load(p)
    assert str(e.value).startswith("a0 = [1, 1, 1, 1, 1, 1, 1, 1, ...]: unknown section") and len(str(e.value)) < 300


@pytest.mark.parametrize("address", ["", "http://head:6379", "head", "head:0", "head:99999", "ray://", "a b:1"])
def test_a_ray_address_is_auto_or_host_and_port(address):
    with pytest.raises(ParamError, match=r"^ray.address = .*: must be 'auto' or a cluster address"):
        config.Ray.parse({"address": address})
    for good in ("auto", "head:6379", "ray://head:10001", "10.0.0.1:6379", "[::1]:6379"):
        assert config.Ray.parse({"address": good}).address == good


def _profile(**changes) -> dict:
    params = yaml.safe_load((ROOT / "profiles" / "quick.yaml").read_text())
    for section, values in changes.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    return params


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"nads": {"n_netwrks": 4096}}, "nads.n_netwrks = 4096: unknown key; allowed keys: input_shape, n_networks"),
        (
            {"archs": {"sweep": ["logreg", "lenet", "vgg11_bn"]}},
            "archs.sweep = ['logreg', 'lenet', 'vgg11_bn']: vgg11_bn not in archs.nads",
        ),
        ({"archs": {"nads": [], "sweep": []}}, "archs.nads = []: must list at least one architecture"),
        ({"device": "gpu"}, "device = 'gpu': allowed: auto, cpu, cuda, cuda:N"),
        ({"models_per_batch": -1}, "models_per_batch = -1: must be an integer >= 0"),
        (
            {"nads": {"input_shape": [1, 16, 16]}},
            "nads.input_shape = [1, 16, 16]: must be [1, 32, 32]: the sweep trains",
        ),
        (
            {"nads": {"input_shape": [3, 32, 32]}, "synthetic": {"input_shape": [3, 32, 32]}},
            "nads.input_shape = [3, 32, 32]: must be [1, 32, 32]: poison puts 1x32x32 NADs into CIFAR-10 images",
        ),
    ],
)
def test_the_whole_file_is_checked_keys_and_rules_between_sections(tmp_path, changes, message):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(_profile(**changes)))
    with pytest.raises(ParamError) as e:
        config.load(p)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize(
    "archs, message",
    [
        (
            {"poison": ["lenett"], "nads": ["logreg", "lenet", "lenett"]},
            "error: archs.nads: arch = 'lenett': unknown architecture; did you mean lenet?",
        ),
        (
            {
                "compare": ["lenet_nopool"],
                "nads": ["lenet_nopool"],
                "sweep": ["lenet_nopool"],
                "poison": [],
                "flip": [],
            },
            "error: archs.compare = ['lenet_nopool']: lenet_nopool: the paper published results for logreg, lenet",
        ),
    ],
)
def test_check_params_names_what_cannot_be_built_or_compared(tmp_path, capsys, archs, message):
    from nads import cli

    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(_profile(archs=archs)))
    config.load(p)  # the file itself is fine: the names are for check-params (and each stage)
    assert cli.main(["check-params", "--params", str(p)]) == 2
    assert capsys.readouterr().err.startswith(message)


def test_the_configuration_loads_without_torch_or_numpy():
    blocked = "import sys; sys.modules.update(torch=None, numpy=None); "
    code = blocked + "import nads.config as c; print(c.load('profiles/quick.yaml')['nads'].n_networks)"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout == "2048\n", p.stderr
    p = subprocess.run(
        [sys.executable, "-c", blocked + "import nads.models.lenet"], cwd=ROOT, capture_output=True, text=True
    )
    assert p.returncode and "ModuleNotFoundError" in p.stderr and "torch" in p.stderr  # the block is real


def test_values_read_as_dvc_reads_them(tmp_path):
    """YAML 1.2, as DVC (ruamel.yaml) reads params.yaml: 5e-4 is a number, yes/no are strings."""
    from ruamel.yaml import YAML

    scalars = [
        "5e-4",
        "1e3",
        "1.",
        "017",
        "0o17",
        "0x1F",
        "0b101",
        "1_000",
        "1_000.5",
        ".5",
        "+.5",
        ".5e3",
        "-1.5e+3",
        "yes",
        "no",
        "on",
        "off",
        "y",
        "True",
        "FALSE",
        "~",
        "null",
        ".inf",
        "-.inf",
        "1:20",
        "2001-12-14",
        "0.0005",
        "12e",
        "abc",
    ]
    text = "".join(f"k{i}: {v}\n" for i, v in enumerate(scalars))
    ours, dvc = config.parse_yaml(text, "x.yaml"), YAML(typ="safe").load(text)
    assert {k: (type(v), v) for k, v in ours.items()} == {k: (type(v), v) for k, v in dvc.items()}
    p = tmp_path / "params.yaml"
    p.write_text((ROOT / "profiles" / "quick.yaml").read_text().replace("weight_decay: 0.0005", "weight_decay: 5e-4"))
    assert "5e-4" in p.read_text() and config.load(p)["poison"].weight_decay == 5e-4


@pytest.mark.parametrize(
    "section, raw, message",
    [
        (config.Nads, {"precision": "fp16"}, "nads.precision = 'fp16': allowed: float32, tf32, bf16"),
        (
            config.Nads,
            {"forward": "fast"},
            "nads.forward = 'fast': allowed: auto, local, eager, channels_last, compiled, compiled_channels_last",
        ),
        (config.Sweep, {"precision": "half"}, "sweep.precision = 'half': allowed: float32, tf32, bf16"),
        (config.Poison, {"device": "gpu"}, "poison.device = 'gpu': unknown key; allowed keys: epochs"),
        (config.NadSweep, {"seeds": 0}, "nad_sweep.seeds = 0: must be an integer >= 1"),
        (config.NadSweep, {"seeds": 2.5}, "nad_sweep.seeds = 2.5: must be an integer"),
    ],
)
def test_device_and_precision_are_checked(section, raw, message):
    with pytest.raises(ParamError, match=message.replace("(", r"\(")):
        section.parse(raw)


def test_poison_and_flip_may_run_no_architecture(tmp_path):
    """The atlas profile trains nothing on CIFAR-10: its DVC matrices of poison and flip are empty."""
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(_profile(archs={"poison": [], "flip": [], "compare": []})))
    archs = config.load(p)["archs"]
    assert archs.poison == () and archs.flip == () and archs.nads == ("logreg", "lenet")
