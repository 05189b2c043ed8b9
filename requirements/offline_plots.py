"""Writes .dvc/plots.html: DVC's page for `dvc plots show`, with Vega inside it.

DVC's own page loads Vega, Vega-Lite and Vega-Embed from a CDN, so offline (a cluster node, a
plane, CI) every plot is an empty box. This template carries the same releases that dvc-render
asks the CDN for, inlined (BSD-3-Clause, notices kept), and .dvc/config names it
(`plots.html_template`). Rerun after a dvc-render upgrade that changes them:

    python requirements/offline_plots.py     # needs the npm registry, once
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
import urllib.request
from pathlib import Path

import dvc_render.vega

OUT = Path(__file__).resolve().parents[1] / ".dvc" / "plots.html"
REGISTRY = "https://registry.npmjs.org"


def release(name: str, version: str) -> tuple[str, str]:
    """The package's minified browser build and its licence, checked against npm's integrity hash."""
    meta = json.load(urllib.request.urlopen(f"{REGISTRY}/{name}/{version}", timeout=60))
    tgz = urllib.request.urlopen(meta["dist"]["tarball"], timeout=120).read()
    algo, digest = meta["dist"]["integrity"].split("-", 1)
    if base64.b64encode(hashlib.new(algo, tgz).digest()).decode() != digest:
        raise SystemExit(f"{name}@{version}: the tarball does not match npm's {algo} integrity hash")
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        js = tar.extractfile(f"package/build/{name}.min.js").read().decode()
        notice = tar.extractfile("package/LICENSE").read().decode()
    if "</script" in js.lower():  # would end the inline <script> early
        raise SystemExit(f"{name}@{version}: its build contains '</script'; it cannot be inlined")
    return js, notice


def main() -> None:
    cdn = re.findall(r"cdn\.jsdelivr\.net/npm/([\w-]+)@([\d.]+)", dvc_render.vega.VegaRenderer.SCRIPTS)
    assert [n for n, _ in cdn] == ["vega", "vega-lite", "vega-embed"], cdn
    scripts = []
    for name, version in cdn:
        js, notice = release(name, version)
        scripts.append(f"<!-- {name}@{version} ({REGISTRY}/{name}/-/{name}-{version}.tgz)\n{notice.strip()}\n-->")
        scripts.append(f"<script>{js}</script>")
    page = "\n".join(
        [
            "<!DOCTYPE html>",
            "<!-- Written by requirements/offline_plots.py: DVC's plots page with Vega inlined, so it",
            "     renders offline. -->",
            "<html>",
            "<head>",
            "{refresh_tag}",
            "<title>DVC Plot</title>",
            *scripts,
            # The grid of plots fits the window: columns share its width, images scale down.
            "<style>table { border-spacing: 15px; width: 100%; table-layout: fixed; } "
            "td { vertical-align: top; overflow-x: auto; } img, canvas { max-width: 100%; height: auto; }</style>",
            "</head>",
            "<body>",
            "{plot_divs}",
            "</body>",
            "</html>",
            "",
        ]
    )
    OUT.write_text(page)
    print(f"{OUT}: {len(page) / 1e6:.2f} MB ({', '.join(f'{n}@{v}' for n, v in cdn)})")


if __name__ == "__main__":
    main()
