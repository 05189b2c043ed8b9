"""The `nads` command line."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import config, errors


def _check_params(args) -> int:
    from .models import check_arch
    from .published import ARCHS as PUBLISHED

    params = config.load(args.params)
    archs = params["archs"]
    for stage in ("nads", "sweep", "poison", "flip"):
        for arch in getattr(archs, stage):
            try:
                check_arch(arch)
            except ValueError as e:
                raise errors.ParamError(f"archs.{stage}: {e}") from None
    unpublished = [a for a in archs.compare if a not in PUBLISHED]
    if unpublished:
        raise errors.ParamError(
            f"archs.compare = {list(archs.compare)}: {', '.join(unpublished)}: the paper "
            f"published results for {', '.join(PUBLISHED)} only"
        )
    print(f"{args.params}: profile {params.profile!r}, sections ok: {', '.join(params.sections)}")
    return 0


def _shape(text: str) -> tuple:
    try:
        shape = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected C,H,W such as 1,32,32") from None
    if len(shape) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three integers C,H,W such as 1,32,32")
    return shape


def _estimate(args) -> int:
    import json

    import numpy as np

    from . import files
    from .estimate import estimate_nads
    from .executor import make_executor

    files.check_writable(args.out)  # before minutes of compute, not after
    executor = make_executor(args.executor, args.ray_address)
    try:
        result = estimate_nads(
            args.arch,
            args.input_shape,
            args.networks,
            args.estimator,
            args.step,
            args.seed,
            args.device,
            precision=args.precision,
            executor=executor,
            forward=args.forward,
            progress=True,
        )
    except errors.ParamError as e:  # checked as params.yaml's nads section: name the options instead
        key, sep, rest = str(e).partition(" = ")
        if not (sep and key.startswith("nads.")):
            raise
        option = {"n_networks": "networks"}.get(key[5:], key[5:]).replace("_", "-")
        raise errors.ParamError(f"--{option} = {rest}") from None
    with files.atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                nads=result.nads,
                eigenvalues=result.eigenvalues,
                diagnostics=json.dumps(result.diagnostics, sort_keys=True),
            )
    d = result.diagnostics
    agree = ", ".join(
        f"top-{k} {d[f'half_agreement_top{k}']:.2f}" for k in (1, 10, 100) if f"half_agreement_top{k}" in d
    )
    print(
        f"{args.out}: {len(result.nads)} NADs of {args.arch} from {d['n_networks']} networks "
        f"in {result.timing['seconds']:.1f} s ({result.timing['networks_per_second']:.1f} networks/s); "
        f"agreement of independent halves: {agree} (1 = converged)"
    )
    return 0


def _predict(args) -> int:
    """Scores of directions from an NAD estimate, written as CSV."""
    import time
    from pathlib import Path

    import numpy as np

    from . import files, predict
    from .directions import fourier_directions

    files.check_writable(args.out)
    c, h, w = args.input_shape
    if args.stride < 1 or (h // 2) % args.stride or (w // 2) % args.stride:
        raise errors.ParamError(f"--stride = {args.stride}: must be a positive integer dividing H/2 and W/2")
    if args.arch:
        folder = Path("results/nads") / args.arch
        if args.arch.startswith(".") or "/" in args.arch or "\\" in args.arch:
            raise errors.ParamError(f"--arch = {args.arch!r}: an architecture name (results/nads/<arch>), not a path")
        restore = f"dvc repro nads@{args.arch} (or dvc checkout {folder})"
        nads, vals = files.load_npy(folder / "nads.npy", restore), files.load_npy(folder / "eigenvalues.npy", restore)
    else:
        nads = files.load_npy(args.nads_file, "check --nads-file")
        vals = files.load_npy(args.eigenvalues_file, "check --eigenvalues-file")
    shape = args.input_shape
    if args.directions == "fourier":
        freqs, directions = fourier_directions(shape, args.stride)
        columns = {"k1": freqs[:, 0], "k2": freqs[:, 1]}
    elif args.directions == "nad":
        directions, columns = nads, {"index": np.arange(len(nads))}
    else:
        directions = files.load_npy(args.directions, "check --directions (fourier, nad or an .npy file)")
        columns = {"row": np.arange(len(directions))}
    t0 = time.perf_counter()
    try:
        if not args.arch:
            vals = predict.covariance_eigenvalues(vals, args.eigenvalues_kind)
        score = predict.scores(nads, vals, directions, shape, args.rule)
    except errors.ParamError as e:
        read = f"results/nads/{args.arch}" if args.arch else f"{args.nads_file}, {args.eigenvalues_file}"
        raise errors.ParamError(f"{e} (read from {read})") from None
    seconds = time.perf_counter() - t0
    files.write_csv(args.out, {**columns, "score": score})
    print(f"{args.out}: {len(score)} directions scored ({args.rule} rule) in {seconds:.2f} s")
    return 0


def mlflow_error(e: BaseException) -> str:
    from .tracking import one_line

    return f"{type(e).__name__}: {one_line(str(e))}"


CHECKOUT = Path(".nads-checkout")  # inside the repository, for DVC; removed when done


def _run_ids(uri: str, prefixes: list[str], flag: str) -> tuple[str, list[str]]:
    """The experiment's id and the whole ids of the runs whose ids start with `prefixes`
    (the 8 characters `nads runs` prints are enough)."""
    import mlflow

    from . import tracking
    from .spool import shown

    mlflow.set_tracking_uri(uri)
    try:
        exp = tracking.experiment(mlflow)
        ids = list(mlflow.search_runs([exp.experiment_id]).run_id) if exp else []
    except mlflow.exceptions.MlflowException as e:
        raise tracking.StoreError(f"MLflow tracking store {shown(uri)}: {mlflow_error(e)}") from None
    whole = []
    for prefix in prefixes:
        found = [i for i in ids if i.startswith(prefix)]
        if len(found) != 1:
            raise errors.InputError(f"{flag} {prefix}: {len(found)} runs of experiment nads have an id that starts so")
        whole += found
    return exp.experiment_id, whole


def _checkout(uri: str, run_id: str) -> int:
    """The bytes run `run_id` produced, as its dvc.out.<path> tags name them, fetched by
    hash through DVC (one .dvc file per output, in a scratch folder) and moved into place."""
    import mlflow
    import yaml

    from . import files, tracking
    from .spool import shown

    run_id = _run_ids(uri, [run_id], "--checkout")[1][0]
    try:
        run = mlflow.MlflowClient(uri).get_run(run_id)
    except mlflow.exceptions.MlflowException as e:
        raise tracking.StoreError(f"MLflow tracking store {shown(uri)}: run {run_id}: {mlflow_error(e)}") from None
    tags = run.data.tags
    outs = {k.removeprefix("dvc.out."): v for k, v in tags.items() if k.startswith("dvc.out.")}
    if not outs:
        raise errors.InputError(f"run {run_id} ({run.info.run_name}) records no output hashes (dvc.out.* tags)")
    shutil.rmtree(CHECKOUT, ignore_errors=True)
    CHECKOUT.mkdir()
    try:
        names = sorted(outs)
        for i, path in enumerate(names):
            (CHECKOUT / f"{i}.dvc").write_text(
                yaml.safe_dump({"outs": [{"md5": outs[path], "path": str(i), "hash": "md5"}]})
            )
        pulled = subprocess.run(
            [sys.executable, "-m", "dvc", "pull", "-q", *(str(CHECKOUT / f"{i}.dvc") for i in range(len(names)))],
            capture_output=True,
            text=True,
        )
        if pulled.returncode:
            why = next((x for x in pulled.stderr.splitlines() if x.startswith("ERROR")), "dvc pull failed")
            raise errors.InputError(f"run {run_id}: its outputs are in neither the DVC cache nor the remote ({why})")
        for i, path in enumerate(names):
            files.inside(Path("."), path, "output")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            files._replace(CHECKOUT / str(i), Path(path), park=Path(path).with_name(f".nads-old-{Path(path).name}"))
    finally:
        shutil.rmtree(CHECKOUT, ignore_errors=True)
    commit, dirty = tags.get("git_commit", "unknown"), tags.get("git_dirty") == "true"
    print(
        f"run {run_id} ({run.info.run_name}): {len(names)} output(s) checked out: {', '.join(names)}. "
        f"Made at git commit {commit}{' with uncommitted changes' if dirty else ''}: git checkout {commit} for its code"
    )
    return 0


RUN_FILTERS = {  # nads runs --OPTION VALUE: the run tag it matches (a commit by its prefix)
    "user": "tags.`mlflow.user` = ",
    "host": "tags.host = ",
    "branch": "tags.git_branch = ",
    "commit": "tags.git_commit LIKE ",
}


def _runs(args) -> int:
    """The latest MLflow run of each stage (of those that match the filters), with its headline metrics."""
    import mlflow

    from . import tracking
    from .spool import shown

    uri = args.tracking_uri or tracking.tracking_uri()
    if not tracking.store_exists(uri):  # (reading would create it: this command writes nothing)
        print(f"no runs yet: no store at {shown(uri)} (run the pipeline: make repro)")
        return 0
    tracking.check_store(uri, write=args.sync)
    if args.checkout:
        return _checkout(uri, args.checkout)
    if args.url:
        from .ui import run_url

        # A tracking server serves its own UI; a local store is served by `make ui` (its default port).
        base = uri if uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{args.ui_port}"
        print(run_url(base, *_run_ids(uri, args.url, "--url")))
        return 0
    if args.sync:
        from .spool import deliver_pending

        done, left = deliver_pending(tracking.repo_root(), uri, timeout=120)
        print(f"delivered {done} run log(s) to {shown(uri)}" + (f"; {left} still waiting" if left else ""))
    wanted = {k: getattr(args, k) for k in RUN_FILTERS if getattr(args, k)}
    for k, v in wanted.items():
        if "'" in v:
            raise errors.InputError(f"--{k} {v!r}: a quote cannot be matched")
    query = " and ".join(RUN_FILTERS[k] + (f"'{v}%'" if k == "commit" else f"'{v}'") for k, v in wanted.items())
    mlflow.set_tracking_uri(uri)
    try:
        exp = tracking.experiment(mlflow)
        if exp is None:
            print(f"no runs yet in {shown(uri)} (run the pipeline: make repro)")
            return 0
        latest = _latest_runs(mlflow.MlflowClient(uri), exp.experiment_id, query)
    except mlflow.exceptions.MlflowException as e:
        raise tracking.StoreError(f"MLflow tracking store {shown(uri)}: {mlflow_error(e)}") from None
    if not latest:
        which = " ".join(f"--{k} {v}" for k, v in wanted.items())
        print(
            f"no runs match {which} in {shown(uri)}"
            if which
            else f"no runs yet in {shown(uri)} (run the pipeline: make repro)"
        )
        return 0
    print(f"store: {shown(uri)}" + "".join(f"  {k}={v}" for k, v in wanted.items()))
    rows = [("stage", "experiment", "status", "started", "run", "user@host", "branch:commit", "headline metrics")]
    for run in sorted(latest, key=lambda r: (r.info.run_name, r.data.tags.get("dvc_exp_name", ""))):
        tags, metrics = run.data.tags, run.data.metrics
        where = f"{tags.get('git_branch', '?')}:{tags.get('git_commit', '?')[:8]}"
        rows.append(
            (
                run.info.run_name,
                tags.get("dvc_exp_name", "-"),  # a DVC experiment's runs apart from the workspace's
                run.info.status,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(run.info.start_time / 1000)),
                run.info.run_id[:8],
                f"{tags.get('mlflow.user', '?')}@{tags.get('host', '?')}",
                where + ("+" if tags.get("git_dirty") == "true" else ""),
                "  ".join(
                    [
                        f"{k}={_number(metrics[k])}"
                        for k in tracking.HEADLINE
                        if k in metrics and metrics[k] == metrics[k]
                    ][:4]
                ),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return 0


def _latest_runs(client, experiment_id: str, query: str) -> list:
    """The latest run of each (stage, DVC experiment), newest pages first. Run objects, not a
    data frame: mlflow.search_runs builds one column per param of every run (slow on a long history)."""
    latest: dict = {}
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1000, page_token=token
        )
        for run in page:
            latest.setdefault((run.info.run_name, run.data.tags.get("dvc_exp_name")), run)
        token = page.token
        if not token:
            return list(latest.values())


def _number(x: float) -> str:
    """4 significant digits; a whole number as one (n_train=50000, not 5e+04)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:.4g}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nads", description="Neural Anisotropy Directions toolkit")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check-params", help="validate params.yaml without running anything")
    p.add_argument("--params", default="params.yaml")
    p.set_defaults(func=_check_params)

    from .models import list_models

    p = sub.add_parser(
        "estimate",
        help="estimate the NADs of an architecture (yours too)",
        description="Writes an .npz with `nads` (rows, largest eigenvalue first), `eigenvalues` "
        "and `diagnostics` (JSON). Architectures: "
        + ", ".join(list_models())
        + "; torchvision:NAME or timm:NAME for any classifier of those libraries "
        "(e.g. torchvision:resnet18, timm:vit_tiny_patch16_224; timm needs "
        "pip install 'nads[timm]'); or package.module:callable returning an "
        "nn.Module (called with in_channels, num_classes, input_size).",
    )
    p.add_argument("--arch", required=True)
    d = config.Nads
    p.add_argument(
        "--input-shape",
        type=_shape,
        default=d.input_shape,
        metavar="C,H,W",
        help=f"the input's channels, height and width (default {','.join(map(str, d.input_shape))})",
    )
    p.add_argument(
        "--networks", type=int, default=d.n_networks, help=f"number of random networks (default {d.n_networks})"
    )
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of x0 and of every network (default {d.seed})")
    p.add_argument(
        "--estimator",
        default=d.estimator,
        choices=config.ESTIMATORS,
        help=f"fd: central finite differences at x0, as published; autograd: exact gradients (default {d.estimator})",
    )
    p.add_argument("--step", type=float, default=d.step, help=f"finite-difference step (default {d.step:g})")
    p.add_argument(
        "--device", default="auto", help="auto (a GPU where there is one), cpu, cuda or cuda:N (default auto)"
    )
    p.add_argument(
        "--precision",
        default=d.precision,
        choices=config.PRECISIONS,
        help="arithmetic of the forward passes (default float32)",
    )
    p.add_argument(
        "--forward",
        default=d.forward,
        choices=config.FORWARDS,
        help="how the finite-difference forward passes run, for speed: local (only what each pixel "
        "changes), eager, channels_last, compiled (torch.compile), compiled_channels_last; auto: local "
        f"on a CPU, eager on a GPU (default {d.forward})",
    )
    p.add_argument(
        "--executor",
        default="local",
        choices=config.EXECUTORS,
        help="local (this machine, one process per core) or ray (a Ray cluster; pip install 'nads[ray]') "
        "(default local)",
    )
    p.add_argument(
        "--ray-address",
        default="auto",
        help="with --executor ray: auto ($RAY_ADDRESS, a cluster started here, or a new local one), "
        "or an address such as ray://head:10001 (default auto)",
    )
    p.add_argument("--out", required=True, help="output .npz file")
    p.set_defaults(func=_estimate)

    from . import predict

    p = sub.add_parser(
        "predict",
        help="predicted learnability of directions, from an NAD estimate alone",
        description="Scores directions v (higher: D(v) predicted easier to learn) from NADs and "
        "eigenvalues: the pipeline's (--arch) or any files (the published ones too). "
        "Writes CSV: k1,k2,score (fourier), index,score (nad), row,score (a file).",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--arch", help="the NADs of nads@ARCH (results/nads/ARCH)")
    source.add_argument("--nads-file", help="an .npy of NADs, one per row (needs --eigenvalues-file)")
    p.add_argument("--eigenvalues-file", help="an .npy of their eigenvalues, in the order of the rows")
    p.add_argument(
        "--eigenvalues-kind",
        default=predict.KINDS[0],
        choices=predict.KINDS,
        help="covariance eigenvalues (this project's), or PCA singular values sqrt((n-1) lambda) "
        "(the published *_eigenvals.npy); default covariance",
    )
    p.add_argument(
        "--directions",
        default="fourier",
        help="fourier (the Fourier grid, see --stride), nad (the NADs themselves) or FILE.npy (one direction per row)",
    )
    p.add_argument("--stride", type=int, default=1, help="Fourier grid stride (default 1: every frequency)")
    p.add_argument("--input-shape", type=_shape, default=(1, 32, 32), metavar="C,H,W")
    p.add_argument(
        "--rule",
        default=predict.RULE,
        choices=predict.RULES,
        help="shift: gradient energy averaged over image shifts (default); energy: v^T Sigma v",
    )
    p.add_argument("--out", required=True, help="output .csv file")
    p.set_defaults(func=_predict)

    p = sub.add_parser("runs", help="the latest MLflow run of each stage, with its headline metrics")
    p.add_argument("--tracking-uri", default=None, help="default: the repository's mlflow.db")
    p.add_argument(
        "--sync",
        action="store_true",
        help="first deliver the run logs that stages kept while the store was away (.nads/runs)",
    )
    p.add_argument(
        "--checkout",
        metavar="RUN_ID",
        help="put the exact outputs of that run into this workspace (from the DVC cache or remote)",
    )
    p.add_argument(
        "--url",
        nargs="+",
        metavar="RUN_ID",
        help="print the MLflow UI address of that run's page (of several runs: their compare page)",
    )
    p.add_argument("--ui-port", type=int, default=5000, help="the port `make ui` serves a local store on (5000)")
    for k in RUN_FILTERS:
        p.add_argument(
            f"--{k}",
            help={
                "user": "only the runs of this user (the UI's User column)",
                "host": "only the runs made on this machine (its hostname)",
                "branch": "only the runs made on this git branch",
                "commit": "only the runs made at this git commit (a prefix is enough)",
            }[k],
        )
    p.set_defaults(func=_runs)

    args = parser.parse_args(argv)
    if getattr(args, "nads_file", None) and not args.eigenvalues_file:
        parser.error("--nads-file needs --eigenvalues-file")
    try:
        return args.func(args)
    except (errors.InputError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `nads runs | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no second error at exit's flush)
        return 0


if __name__ == "__main__":
    sys.exit(main())
