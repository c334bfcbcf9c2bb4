#!/usr/bin/env python3
"""Register a small scoring model in MLflow: a scikit-learn classifier wrapped in a pyfunc
whose predictions are the positive-class probability plus a fixed ``--shift`` (clipped to
[0, 1]), so a test can serve an identical or a shifted candidate with the real
``mlflow models serve``.

Features are ``f0`` … ``f{n-1}``; prints one JSON line: {"version": "...", "model_uri": "..."}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import warnings


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--model-name", required=True)
    p.add_argument("--shift", type=float, default=0.0)
    p.add_argument("--features", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(sys.stderr):
        result = register(args)
    print(json.dumps(result), flush=True)
    return 0


def register(args: argparse.Namespace) -> dict:
    import mlflow
    import mlflow.pyfunc
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    columns = [f"f{i}" for i in range(args.features)]
    x, y = make_classification(
        n_samples=400, n_features=args.features, n_informative=2, n_redundant=0, random_state=args.seed
    )
    classifier = LogisticRegression(max_iter=200, random_state=args.seed).fit(x, y)

    class ShiftedScore(mlflow.pyfunc.PythonModel):
        def __init__(self, model, columns, shift):
            self.model, self.columns, self.shift = model, columns, shift

        def predict(self, context, model_input, params=None):
            import pandas as pd

            # Without a signature, `instances` and `inputs` arrive as dicts or lists.
            frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
            proba = self.model.predict_proba(frame[self.columns].to_numpy(dtype=float))[:, 1]
            return np.clip(proba + self.shift, 0.0, 1.0).tolist()

    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment(f"{args.model_name}-scoring")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ShiftedScore(classifier, columns, args.shift),
            registered_model_name=args.model_name,
            pip_requirements=["scikit-learn", "numpy", "pandas"],
        )
    version = str(info.registered_model_version)
    return {"version": version, "model_uri": f"models:/{args.model_name}/{version}"}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
