"""The report's claims: which claim each kind of architecture is held to, and the verdict."""

import json

import numpy as np

from nads import files, report

# 34 Fourier directions of the quick profile (stride 4), one per real frequency.
K1, K2 = np.array([(a, b) for a in range(0, 32, 4) for b in range(0, 17, 4) if not (b in (0, 16) and a > 16)]).T


def fourier_results(root, arch, acc):
    d = root / "results/sweep" / arch / "fourier"
    d.mkdir(parents=True)
    files.write_csv(d / "accuracy.csv", {"k1": K1, "k2": K2, "test_acc": acc, "train_acc": acc})
    (d / "metrics.json").write_text(
        json.dumps(
            {
                "n_directions": len(acc),
                "mean_test_acc": float(np.mean(acc)),
                "frac_test_acc_above_0.9": float(np.mean(acc > 0.9)),
            }
        )
    )


def claims(section):
    return [(c.text, bool(c.supported)) for c in section.claims]


def test_pooling_free_networks_are_held_to_learning_every_direction(tmp_path):
    assert len(K1) == 34
    high = np.full(34, 0.97)
    high[0] = 0.56  # lenet_nopool's measured DC accuracy: 33 of 34 above 0.9 still supports the claim
    fourier_results(tmp_path, "lenet_nopool", high)
    assert claims(report.fourier_section(tmp_path, "lenet_nopool")) == [
        ("Without pooling, lenet_nopool learns almost every direction", True)
    ]
    fourier_results(tmp_path, "vgg11_bn_nopool", np.where(np.arange(34) < 5, 0.5, 0.97))  # 29 of 34
    assert claims(report.fourier_section(tmp_path, "vgg11_bn_nopool"))[0][1] is False


def test_pooled_cnns_are_held_to_failing_somewhere_and_lenet_to_its_axes(tmp_path):
    fourier_results(tmp_path, "resnet18", np.where(K1 == 16, 0.51, 0.99))
    assert claims(report.fourier_section(tmp_path, "resnet18")) == [
        ("resnet18 fails on some directions that logistic regression learns", True)
    ]
    fourier_results(tmp_path, "densenet121", np.full(34, 0.99))
    assert claims(report.fourier_section(tmp_path, "densenet121"))[0][1] is False
    low = (np.minimum(K1, 32 - K1) <= 4) & (K2 <= 4)
    fourier_results(tmp_path, "lenet", np.where(low, 0.9, 0.5))
    ((text, ok),) = claims(report.fourier_section(tmp_path, "lenet"))
    assert text == "lenet learns low frequencies but not ±8 and ±16 along an axis" and ok


def test_nad_claims_only_for_pooled_cnns(tmp_path):
    for arch, rho in (("lenet", 0.95), ("lenet_nopool", 0.26)):
        d = tmp_path / "results/nads" / arch
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"n_networks": 8, "index_frequency_spearman": rho}))
        (tmp_path / "results/figures/nads" / arch).mkdir(parents=True)
        (tmp_path / "results/figures/nads" / arch / "nads.png").touch()  # the section only names its figures
        d = tmp_path / "results/sweep" / arch / "nad"
        d.mkdir(parents=True)
        files.write_csv(
            d / "accuracy.csv",
            {
                "index": [0, 10, 100],
                "eigenvalue": [3.0, 2.0, 1.0],
                "test_acc": [0.96, 0.7, 0.5],
                "train_acc": [1.0, 1.0, 1.0],
            },
        )
        (d / "metrics.json").write_text(
            json.dumps(
                {
                    "n_directions": 3,
                    "mean_test_acc": 0.72,
                    "seeds": 1,
                    "auc_learned_first": 1.0,
                    "last_learned_index": 10,
                    "spearman_index_vs_test_acc": -1.0,
                }
            )
        )
    assert claims(report.nads_section(tmp_path, "lenet")) == [
        ("The NADs' Fourier energy moves outward with the index", True)
    ]
    assert claims(report.nad_sweep_section(tmp_path, "lenet")) == [
        ("Accuracy on D(u_i) falls with the NAD index i", True)
    ]
    assert claims(report.nads_section(tmp_path, "lenet_nopool")) == []
    assert claims(report.nad_sweep_section(tmp_path, "lenet_nopool")) == []


def test_a_value_with_nothing_to_rank_is_named_in_a_line_not_shown_as_nan(tmp_path):
    from nads.pages import Section

    sections = [Section("logreg on D(u_i)", table={"n_directions": 14, "spearman": float("nan"), "auc": 1.0})]
    report._write_page("t", ("head", "other", "o.html", "o.md"), "p: 1", sections, tmp_path, tmp_path, "i.html", "i.md")
    for name in ("i.html", "i.md"):
        text = (tmp_path / name).read_text()
        assert "nan" not in text.lower() and "Not defined on this run (nothing to rank or compare): spearman." in text
        assert "n_directions" in text and "auc" in text
    assert "<h2>Contents</h2><ul><li><a href='#s0'>logreg on D(u_i)</a></li></ul>" in (tmp_path / "i.html").read_text()


def test_nad_index_axes_show_no_negative_index_and_cut_no_marker():
    import matplotlib.pyplot as plt

    from nads import plots

    fig, ax = plt.subplots()
    ax.plot([0, 1, 10, 1000], [0.3, 0.4, 0.5, 0.55], "o-")
    plots._index_axis(ax)
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    assert lo == -0.5 and hi == 2000  # 0 and 1000 inside, with room for their markers
    assert all(t >= 0 for t in ax.get_xticks() if lo <= t <= hi)
    plt.close(fig)


def test_the_comparison_table_shows_words_not_keys():
    keys = ["control_curve_frac_within_2sd", "curve_mean_abs_diff", "grid_n", "grid_pearson_r", "nads_agreement_top10"]
    keys += ["predicted_auc_grid_ours_nads", "predicted_spearman_curve_published_nads", "radius_0-9"]
    keys += ["published_radius_300-1022"]
    labels = [report.compare_label(k) for k in keys]
    assert not set(labels) & set(keys) and len(set(labels)) == len(keys)
    assert labels[4] == "NADs vs published: subspace agreement of the top 10"
    assert labels[8] == "published NADs 300–1022: mean radial frequency"
