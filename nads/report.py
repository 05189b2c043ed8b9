"""One results report (HTML with embedded figures, and Markdown) from the stage outputs only.

Each section states the paper's claim it tests and whether this run supports it,
computed from the data.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import yaml

from . import files, predict
from .pages import Claim, Section, figure, floats, need, read_json, sweep


def _pooled_cnn(arch: str) -> bool:
    """The paper's directional claims are about CNNs with pooling; logistic
    regression and the pooling-free variants are its controls."""
    return arch != "logreg" and not arch.endswith("_nopool")


def nads_section(root: Path, arch: str) -> Section:
    d = root / "results/nads" / arch
    m = read_json(d / "metrics.json", f"nads@{arch}")
    s = Section(
        f"NADs of {arch}",
        [need(figure(root, d, "nads.png"), "figures"), figure(root, d, "spectrum.png")],
        {
            k: m[k]
            for k in (
                "n_networks",
                "half_agreement_top1",
                "half_agreement_top10",
                "index_frequency_spearman",
                "autograd_vs_fd_top10",
            )
            if k in m
        },
    )
    if _pooled_cnn(arch):
        rho = m["index_frequency_spearman"]
        s.claims.append(
            Claim(
                "The NADs' Fourier energy moves outward with the index",
                f"Spearman ρ(index, radial frequency) = {rho:+.2f} over the first NADs",
                rho > 0.5,
            )
        )
    return s


def fourier_section(root: Path, arch: str) -> Section:
    d, t, m = sweep(root, arch, "fourier")
    s = Section(
        f"{arch} on D(v), Fourier directions",
        [figure(root, d, "heatmap.png")],
        {k: m[k] for k in ("n_directions", "mean_test_acc", "frac_test_acc_above_0.9")},
    )
    acc = floats(t, "test_acc")
    k1, k2 = floats(t, "k1"), floats(t, "k2")
    spread = f"minimum test accuracy {np.nanmin(acc):.3f}, fraction above 0.9: {np.mean(acc > 0.9):.2f}"
    if not _pooled_cnn(arch):
        text = (
            "Logistic regression learns every direction"
            if arch == "logreg"
            else f"Without pooling, {arch} learns almost every direction"
        )
        s.claims.append(Claim(text, spread, bool(np.mean(acc > 0.9) >= 0.9)))
    elif arch != "lenet":
        s.claims.append(
            Claim(f"{arch} fails on some directions that logistic regression learns", spread, np.nanmin(acc) < 0.6)
        )
    else:
        kk1 = np.minimum(k1, 32 - k1)
        low = acc[(kk1 <= 4) & (k2 <= 4)]
        axis = acc[((kk1 == 0) & np.isin(k2, [8, 16])) | ((k2 == 0) & np.isin(kk1, [8, 16]))]
        if len(low) and len(axis):
            s.claims.append(
                Claim(
                    f"{arch} learns low frequencies but not ±8 and ±16 along an axis",
                    f"mean test accuracy {np.nanmean(low):.3f} at |k| ≤ 4, {np.nanmean(axis):.3f} "
                    f"at (±8, 0), (±16, 0), (0, 8), (0, 16)",
                    np.nanmean(low) - np.nanmean(axis) > 0.1 and np.nanmean(axis) < 0.6,
                )
            )
    return s


def _pm(m: dict, key: str) -> str:
    """A metric with its seed spread: `0.98 ± 0.01 over 3 seeds`, or `0.98 (one seed)`; one that
    is not defined on the run (a rank with nothing to rank) in words."""
    if m[key] != m[key]:
        return "undefined (nothing to rank: every direction alike)"
    if f"{key}_sd" not in m:
        return f"{m[key]:.2f} (one seed)"
    return f"{m[key]:.2f} ± {m[key + '_sd']:.2f} over {m.get('seeds', 'the')} seeds"


def nad_sweep_section(root: Path, arch: str) -> Section:
    d, t, m = sweep(root, arch, "nad")
    keys = (
        "n_directions",
        "mean_test_acc",
        "auc_learned_first",
        "auc_learned_first_sd",
        "last_learned_index",
        "spearman_index_vs_test_acc",
        "spearman_index_vs_test_acc_sd",
    )
    s = Section(f"{arch} on D(u_i), its own NADs", [figure(root, d, "curve.png")], {k: m[k] for k in keys if k in m})
    if _pooled_cnn(arch):
        acc, auc = floats(t, "test_acc"), m["auc_learned_first"]
        s.claims.append(
            Claim(
                "Accuracy on D(u_i) falls with the NAD index i",
                f"a learned NAD (test accuracy ≥ {predict.LEARNED}) comes before one at chance: "
                f"AUC {_pm(m, 'auc_learned_first')}; "
                + (f"learned up to u_{m['last_learned_index']}; " if m["last_learned_index"] >= 0 else "none learned; ")
                + f"{acc[0]:.3f} at i = {t['index'][0]}, {acc[-1]:.3f} at i = {t['index'][-1]}",
                auc >= 0.9,
            )
        )
    return s


def predict_section(root: Path, arch: str) -> Section:
    d = root / "results/predict" / arch
    m = read_json(d / "metrics.json", f"predict@{arch}")
    title = f"{arch}: learnability predicted from its NADs alone"
    headline = [m[k] for k in ("auc_fourier", "auc_nad", "spearman_fourier", "spearman_nad")]
    if all(v != v for v in headline):  # all NaN: every direction is learned alike (logreg)
        return Section(
            title,
            note=f"Nothing to rank: its sweeps learned every direction alike (the {m['n_fourier']} Fourier "
            f"directions and the {m['n_nad']} NADs), so no score can put learned directions before the "
            "others; the prediction is checked on architectures that fail somewhere.",
        )
    return Section(
        title,
        [figure(root, d, "grid.png"), figure(root, d, "curve.png")],
        {
            "rule": m["rule"],
            "AUC of learned over chance directions, Fourier": _pm(m, "auc_fourier"),
            "AUC of learned over chance directions, NADs": _pm(m, "auc_nad"),
            "Spearman(score, test accuracy), Fourier directions": _pm(m, "spearman_fourier"),
            "Spearman(score, test accuracy), NADs": _pm(m, "spearman_nad"),
        },
        note="Beyond the paper: a score per direction from the NAD estimate (nads/predict.py): "
        f"whether it puts the learned directions (test accuracy ≥ {predict.LEARNED}) before "
        "those at chance (AUC, the headline), and its rank correlation with the measured "
        "accuracies (Spearman, which also ranks the noise among directions at chance); mean ± "
        "sd over the sweep's seeds; undefined where there is nothing to rank.",
    )


def poison_section(root: Path, arch: str) -> Section:
    d = root / "results/poison" / arch
    t = files.read_csv(need(d / "results.csv", f"poison@{arch}"))
    clean = float(t["clean_test_acc"][0])
    acc = floats(t, "clean_test_acc")[1:]
    idx = t["nad_index"][1:]
    s = Section(
        f"{arch} on CIFAR-10 with NAD carriers",
        [figure(root, d, "curve.png")],
        {"clean baseline test acc": clean, **{f"test acc, carrier on NAD {i}": a for i, a in zip(idx, acc)}},
    )
    s.claims.append(
        Claim(
            "A carrier on a top NAD is a shortcut that costs clean accuracy; one on a late NAD is ignored",
            f"clean test accuracy {clean:.3f} without carrier, {acc[0]:.3f} with it on "
            f"NAD {idx[0]}, {acc[-1]:.3f} on NAD {idx[-1]}",
            (clean - acc[0]) - (clean - acc[-1]) > 0.1,
        )
    )
    return s


def flip_section(root: Path, arch: str) -> Section:
    d = root / "results/flip" / arch
    m = read_json(d / "metrics.json", f"flip@{arch}")
    s = Section(f"{arch} on CIFAR-10 in the flipped NAD basis", [figure(root, d, "bars.png")], dict(m))
    s.claims.append(
        Claim(
            "Flipping the NAD basis (an orthogonal change that loses nothing) costs accuracy "
            "(the paper: 20 to 35 points)",
            f"{m['original_test_acc']:.3f} → {m['flipped_test_acc']:.3f} ({100 * m['drop']:.1f} points)",
            m["drop"] > 0.05,
        )
    )
    return s


# How close this run must come to the published results for the report to call it a reproduction,
# stated for the paper's scale: smaller profiles (fewer networks, samples, epochs) may fall outside.
TOLERANCE = {
    "nads_agreement_top10": 0.9,
    "grid_pearson_r": 0.9,
    "grid_mean_abs_diff": 0.05,
    "curve_mean_abs_diff": 0.05,
}


_MEASURES = {
    "frac_within_2sd": "fraction of published values within 2 seed sd",
    "mean_abs_diff": "mean |Δ|",
    "n": "points compared",
    "pearson_r": "Pearson r",
    "seed_sd": "seed sd",
}
_AGAINST = {
    "control_curve_": "control curve (published NADs, our training)",
    "curve_": "NAD curve",
    "grid_": "Fourier grid",
}


def compare_label(key: str) -> str:
    """The words for a key of compare@<arch>'s metrics.json, as the report's table shows it."""
    if m := re.fullmatch(r"nads_agreement_top(\d+)", key):
        return f"NADs vs published: subspace agreement of the top {m[1]}"
    if m := re.fullmatch(r"predicted_(auc|spearman)_(grid|curve)_(ours|published)_nads", key):
        what = {"auc": "AUC", "spearman": "Spearman"}[m[1]]
        where = {"grid": "Fourier grid", "curve": "NAD curve"}[m[2]]
        return f"prediction from {'our' if m[3] == 'ours' else 'the published'} NADs: {what} on the {where}"
    if m := re.fullmatch(r"(published_)?radius_(\d+)-(\d+)", key):
        return f"{'published' if m[1] else 'our'} NADs {m[2]}–{m[3]}: mean radial frequency"
    for prefix, name in _AGAINST.items():
        if key.startswith(prefix) and key[len(prefix) :] in _MEASURES:
            return f"{name} vs published: {_MEASURES[key[len(prefix) :]]}"
    return key


def compare_section(root: Path, arch: str) -> Section:
    d = root / "results/compare" / arch
    m = read_json(d / "metrics.json", f"compare@{arch}")
    figures = [
        figure(root, d, f) for f in ("nads.png", "spectra.png", "grid.png", "curve.png") if figure(root, d, f).exists()
    ]
    s = Section(
        f"Paper vs this run: {arch}",
        figures,
        {compare_label(k): v for k, v in m.items()},
        note="Tolerances are stated for the paper's scale; a smaller profile may fall outside them.",
    )
    t = TOLERANCE
    if _pooled_cnn(arch):  # (logistic regression's NADs are unordered: any basis of a flat spectrum)
        agree = m["nads_agreement_top10"]
        s.claims.append(
            Claim(
                f"The NADs are the published ones (top-10 subspace agreement ≥ {t['nads_agreement_top10']})",
                f"top-1/10/100 agreement {m['nads_agreement_top1']:.2f}/{agree:.2f}/{m['nads_agreement_top100']:.2f}",
                agree >= t["nads_agreement_top10"],
            )
        )
    r, diff = m["grid_pearson_r"], m["grid_mean_abs_diff"]
    ok = diff <= t["grid_mean_abs_diff"] and (r != r or r >= t["grid_pearson_r"])  # r is NaN for a flat grid
    s.claims.append(
        Claim(
            f"The Fourier grid is the published one (Pearson r ≥ {t['grid_pearson_r']} where the "
            f"grid varies, mean |Δ| ≤ {t['grid_mean_abs_diff']})",
            (f"r = {r:.2f}" if r == r else "r undefined (a flat grid: every accuracy the same)")
            + f", mean |Δ| = {diff:.3f} over {m['grid_n']} cells both have",
            ok,
        )
    )
    if "curve_mean_abs_diff" in m:
        diff = m["curve_mean_abs_diff"]
        seen = f"mean |Δ| = {diff:.3f} over {m['curve_n']} indices{_spread(m, 'curve_')}"
        if "control_curve_mean_abs_diff" in m:
            seen += (
                f"; the control (our training, published NADs): mean |Δ| = "
                f"{m['control_curve_mean_abs_diff']:.3f}{_spread(m, 'control_curve_')}"
            )
        s.claims.append(
            Claim(
                f"The NAD curve is the published one (mean |Δ| ≤ {t['curve_mean_abs_diff']})",
                seen,
                diff <= t["curve_mean_abs_diff"],
            )
        )
    return s


def _spread(m: dict, prefix: str) -> str:
    if f"{prefix}seed_sd" not in m:
        return ""
    return (
        f" (seed sd {m[prefix + 'seed_sd']:.3f}; the published value within 2 sd at "
        f"{m[prefix + 'frac_within_2sd']:.0%} of them)"
    )


def build(root: Path, archs) -> list[Section]:
    """The report's sections for the architectures of each stage family (a config.Archs)."""
    sections = [nads_section(root, a) for a in archs.nads]
    for arch in archs.sweep:
        sections += [fourier_section(root, arch), nad_sweep_section(root, arch), predict_section(root, arch)]
    sections += [poison_section(root, a) for a in archs.poison]
    sections += [flip_section(root, a) for a in archs.flip]
    sections += [compare_section(root, a) for a in archs.compare]
    return sections


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write(root: Path, out_dir: Path, params, commit: str, env: dict | None = None, final: Path | None = None) -> dict:
    """Write index.html and summary.md, and the atlas page (atlas.html, atlas.md, figures in atlas/),
    for the checked params (a config.Params) and the software `env` ({name: version}); return
    counts of claims. `final`: where the pages will be read from, if out_dir is a staging folder
    (the Markdown pages link the figures of other stages relative to it)."""
    from . import atlas

    pages = {
        "index.html": ("nads results", build(root, params["archs"]), "summary.md"),
        "atlas.html": (
            "nads atlas: the architectures side by side",
            atlas.sections(root, params["archs"], out_dir / "atlas"),
            "atlas.md",
        ),
    }
    claims = [c for _, page, _ in pages.values() for s in page for c in s.claims]
    listed = [
        {"page": name, "section": s.title, "anchor": f"s{i}", "text": c.text, "evidence": c.evidence}
        | {"supported": bool(c.supported)}  # (numpy's bool where a claim computes it)
        for name, (_, page, _) in pages.items()
        for i, s in enumerate(page)
        for c in s.claims
    ]
    with files.atomic_path(out_dir / CLAIMS) as tmp:  # (make repro's last line: verdict())
        tmp.write_text(json.dumps(listed, indent=1) + "\n")
    params_yaml = yaml.safe_dump(params.raw, sort_keys=False).strip()
    for name, (title, page, md_name) in pages.items():
        found = [c for s in page for c in s.claims]
        other = next(n for n in pages if n != name)
        software = ", ".join(f"{k} {v}" for k, v in (env or {}).items())
        verdicts = f"{sum(c.supported for c in found)} of {len(found)} claims supported"
        if not found and name == "atlas.html":
            verdicts = (
                "no claims: its claims compare the architecture families, which this profile does not run "
                "(make profile-atlas && make repro)"
            )
        head = (
            f"profile {params.profile}, git commit {commit}; {verdicts}; "
            f"computed with {software or 'an unrecorded environment'}; see also",
            pages[other][0],
            other,
            pages[other][2],
        )
        _write_page(title, head, params_yaml, page, out_dir, final or out_dir, name, md_name)
    return {
        "claims": len(claims),
        "claims_supported": int(sum(bool(c.supported) for c in claims)),
        **headline(root, params["archs"]),
    }


# The few numbers per architecture that `dvc metrics show results/report/metrics.json` shows in
# a terminal: (stage's metrics file, its key, the name here).
HEADLINE = (
    ("sweep/{arch}/fourier", "mean_test_acc", "fourier_acc"),
    ("sweep/{arch}/nad", "auc_learned_first", "nad_auc"),
    ("poison/{arch}", "max_drop_vs_clean", "poison_drop"),
    ("flip/{arch}", "drop", "flip_drop"),
)


def headline(root: Path, archs) -> dict:
    """{arch: {name: value}} of HEADLINE, for the architectures that have them (a number that is
    not defined on this run, such as an AUC with nothing to rank, is left out)."""
    out: dict = {}
    for arch in dict.fromkeys([*archs.sweep, *archs.poison, *archs.flip]):
        for path, key, name in HEADLINE:
            f = root / "results" / path.format(arch=arch) / "metrics.json"
            value = json.loads(f.read_text()).get(key) if f.exists() else None
            if isinstance(value, (int, float)) and value == value:
                out.setdefault(arch, {})[name] = round(float(value), 4)
    return out


CLAIMS = "claims.json"  # every claim of both pages: page, section, anchor, text, evidence, supported


def _mark(claim) -> str:
    return "supported" if claim.supported else "NOT supported"


def verdict(out_dir: Path) -> str:
    """One line: where the report is, how many claims it supports, and which it does not."""
    try:
        claims = json.loads((out_dir / CLAIMS).read_text())
    except (OSError, ValueError):
        return f"report: no {out_dir / CLAIMS} (run dvc repro report)"
    failed = [f"{c['section']}: {c['text']}" for c in claims if not c["supported"]]
    line = f"report: {out_dir / 'index.html'} — {len(claims) - len(failed)} of {len(claims)} claims supported"
    return line + (f"; not supported: {'; '.join(failed)}" if failed else "")


def _write_page(
    title: str, head: tuple, params_yaml: str, sections: list, out_dir: Path, final: Path, name: str, md_name: str
) -> None:
    """One self-contained HTML page (figures embedded) and its Markdown twin (figures linked);
    head: (text, the other page's title, its HTML and its Markdown file)."""
    text, link, link_html, link_md = head
    summary = "params.yaml this report was built from"
    # At the top, what a reader scans first: every claim with its verdict and a link to its
    # section, then the sections.
    found = [(i, s, c) for i, s in enumerate(sections) for c in s.claims]
    top_md = ["## Claims", ""] if found else []
    top_md += [f"- **{_mark(c)}** — [{s.title}](#s{i}): {c.text}: {c.evidence}" for i, s, c in found]
    top_md += ["", "## Contents", "", *[f"- [{s.title}](#s{i})" for i, s in enumerate(sections)], ""]
    top = "".join(
        f"<li class='{'ok' if c.supported else 'no'}'><b>{_mark(c)}</b> — <a href='#s{i}'>{html.escape(s.title)}</a>: "
        f"{html.escape(c.text)}: {html.escape(c.evidence)}</li>"
        for i, s, c in found
    )
    contents = "".join(f"<li><a href='#s{i}'>{html.escape(s.title)}</a></li>" for i, s in enumerate(sections))
    md = [
        f"# {title}",
        "",
        f"{text} [{link}]({link_md})",
        "",
        f"<details><summary>{summary}</summary>",
        "",
        "```yaml",
        params_yaml,
        "```",
        "",
        "</details>",
        "",
        *top_md,
    ]
    parts = [
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)} <a href='{link_html}'>{html.escape(link)}</a>"
        f"</p><details><summary>{summary}</summary><pre>{html.escape(params_yaml)}</pre></details>"
        + (f"<h2>Claims</h2><ul>{top}</ul>" if found else "")
        + f"<h2>Contents</h2><ul>{contents}</ul>"
    ]
    for i, s in enumerate(sections):
        md += [f'<a id="s{i}"></a>', "", f"## {s.title}", "", *([s.note, ""] if s.note else [])]
        parts.append(f"<h2 id='s{i}'>{html.escape(s.title)}</h2>" + (f"<p>{html.escape(s.note)}</p>" if s.note else ""))
        for c in s.claims:
            md.append(f"- **{_mark(c)}** — {c.text}: {c.evidence}")
            parts.append(
                f"<p class='{'ok' if c.supported else 'no'}'><b>{_mark(c)}</b> — {html.escape(c.text)}: "
                f"{html.escape(c.evidence)}</p>"
            )
        # A value that is not a number on this run (a correlation with nothing to rank) is named
        # in a line, not shown as NaN.
        undefined = [k for k, v in s.table.items() if isinstance(v, float) and v != v]
        table = {k: v for k, v in s.table.items() if k not in undefined}
        if table:
            md += [
                "",
                "| quantity | value |",
                "|---|---|",
                *[f"| {k.replace('|', chr(92) + '|')} | {_fmt(v)} |" for k, v in table.items()],
                "",
            ]
            parts.append(
                "<table>"
                + "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in table.items())
                + "</table>"
            )
        if undefined:
            line = f"Not defined on this run (nothing to rank or compare): {', '.join(undefined)}."
            md += ["", line, ""]
            parts.append(f"<p>{html.escape(line)}</p>")
        for f in s.figures:
            beside = Path(out_dir) in Path(f).parents  # (the atlas's own figures move with the page)
            md.append(f"![{Path(f).name}]({os.path.relpath(f, out_dir if beside else final)})")
            data = base64.b64encode(need(Path(f), "its stage").read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(Path(f).name)}' src='data:image/png;base64,{data}'>")
        md.append("")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%;display:block;"
        "margin:8px 0}.ok{color:#17702d}.no{color:#a31515}table{border-collapse:collapse}"
        "td{border:1px solid #ccc;padding:2px 8px}"
    )
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    with files.atomic_path(out_dir / name) as tmp:
        tmp.write_text(doc)
    with files.atomic_path(out_dir / md_name) as tmp:
        tmp.write_text("\n".join(md))


if __name__ == "__main__":  # make repro's last line: python -m nads.report [REPORT_DIR]
    print(verdict(Path(sys.argv[1] if len(sys.argv) > 1 else "results/report")))
