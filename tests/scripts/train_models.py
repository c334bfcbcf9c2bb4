#!/usr/bin/env python3
"""Train a tiny scikit-learn classifier and register it in MLflow.

This is what a retraining Job runs: it logs params and metrics (``accuracy``,
``f1``) in a run, registers a new version of ``--model-name``, optionally tags
that version with a lineage tag (``--lineage-tag mlrollout.io/attempt=abc``) so
the operator can find *its* candidate (not merely the newest version), and
prints one JSON line on stdout::

    {"run_id": "...", "version": "3", "accuracy": 0.93, "f1": 0.92, "model_uri": "models:/m/3"}

``--quality`` (0..1) controls how learnable the synthetic data is (label noise
and class separation), so a test can make a deliberately better or worse
challenger; ``--seed`` makes runs reproducible.

Everything else goes to stderr. Exit code 0 on success, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import warnings


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tracking-uri", required=True, help="MLflow server URL, e.g. http://127.0.0.1:5000")
    p.add_argument("--model-name", required=True, help="registered model name")
    p.add_argument("--experiment", default=None, help="experiment name (default: <model-name>-training)")
    p.add_argument(
        "--lineage-tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="tag to set on the new model version (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed for data and model")
    p.add_argument(
        "--quality",
        type=float,
        default=0.8,
        help="0..1: how learnable the data is (higher = better accuracy)",
    )
    p.add_argument("--samples", type=int, default=400, help="number of synthetic rows")
    p.add_argument("--features", type=int, default=8, help="number of features")
    args = p.parse_args(argv)
    if not 0.0 <= args.quality <= 1.0:
        p.error("--quality must be between 0 and 1")
    if args.samples < 20 or args.features < 2:
        p.error("--samples must be >= 20 and --features >= 2")
    tags = {}
    for item in args.lineage_tag:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--lineage-tag expects KEY=VALUE, got {item!r}")
        tags[key] = value
    args.tags = tags
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # MLflow prints "View run ..." lines on stdout: keep stdout for the one JSON result line.
    with contextlib.redirect_stdout(sys.stderr):
        result = train_and_register(args)
    print(json.dumps(result), flush=True)
    return 0


def train_and_register(args: argparse.Namespace) -> dict:
    started = time.monotonic()

    # Quiet, fast, offline-friendly MLflow client.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)

    import mlflow
    import mlflow.sklearn
    import cloudpickle
    import numpy as np
    import sklearn
    from mlflow.tracking import MlflowClient
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment(args.experiment or f"{args.model_name}-training")

    # quality 1.0: well separated, no label noise; quality 0.0: overlapping, 40% flipped labels.
    q = args.quality
    x, y = make_classification(
        n_samples=args.samples,
        n_features=args.features,
        n_informative=max(2, args.features // 2),
        n_redundant=0,
        class_sep=0.3 + 1.7 * q,
        flip_y=0.4 * (1.0 - q),
        random_state=args.seed,
    )
    x = x.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=args.seed)

    params = {"C": 1.0, "max_iter": 200, "seed": args.seed, "quality": q, "samples": args.samples}
    model = LogisticRegression(C=params["C"], max_iter=params["max_iter"], random_state=args.seed)
    model.fit(x_train, y_train)
    pred = model.predict(x_test)
    accuracy = float(accuracy_score(y_test, pred))
    f1 = float(f1_score(y_test, pred))

    with mlflow.start_run(run_name=f"train-{args.model_name}-{args.seed}") as run:
        mlflow.log_params(params)
        mlflow.log_metrics({"accuracy": accuracy, "f1": f1})
        for key, value in args.tags.items():
            mlflow.set_tag(key, value)
        # A small run artifact, downloadable as runs:/<run_id>/training_summary.json.
        mlflow.log_dict(
            {"accuracy": accuracy, "f1": f1, "params": params, "tags": args.tags},
            "training_summary.json",
        )
        # No signature/input-example/requirements inference: those are the slow parts of
        # log_model (requirement inference loads the model again in a subprocess).
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=args.model_name,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            signature=False,
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                f"scikit-learn=={sklearn.__version__}",
                f"cloudpickle=={cloudpickle.__version__}",
            ],
        )
        version = str(info.registered_model_version)
        run_id = run.info.run_id

    client = MlflowClient(tracking_uri=args.tracking_uri)
    for key, value in args.tags.items():
        client.set_model_version_tag(args.model_name, version, key, value)

    print(
        f"trained {args.model_name} v{version} in {time.monotonic() - started:.1f}s "
        f"(accuracy={accuracy:.3f}, f1={f1:.3f})",
        file=sys.stderr,
    )
    return {
        "run_id": run_id,
        "version": version,
        "accuracy": accuracy,
        "f1": f1,
        "model_uri": f"models:/{args.model_name}/{version}",
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
