"""``ml-assets``: the platform's command line.

- ``ml-assets publish --start 2013-01-01 --end 2013-01-31 [--fault KIND]`` lands daily exports;
- ``ml-assets dev`` starts the Dagster UI and daemon on the embedded defaults (landing a first
  week of data when the landing zone is empty);
- ``ml-assets mlflow-ui`` opens the MLflow UI on the platform's tracking store;
- ``ml-assets serve`` starts the prediction service for the flights model's champion.
"""

import argparse
import os
import sys
from datetime import date, timedelta

from ml_assets.home import PROJECT_ROOT, dagster_home, ml_assets_home


def _publish(args: argparse.Namespace) -> int:
    from ml_assets.pipelines.flights.publish import publish
    from resources.landing_zone import default_landing_zone

    landing = default_landing_zone()
    written = publish(landing, args.start, args.end, fault=args.fault)
    print(f"landed {len(written)} files in {landing.url}")
    return 0


def _seed_landing_zone(days: int) -> None:
    """Land the first ``days`` days of 2013 when nothing has landed yet, so the sensor has work."""
    from ml_assets.pipelines.flights import config
    from ml_assets.pipelines.flights.publish import publish
    from resources.landing_zone import default_landing_zone

    landing = default_landing_zone()
    if days <= 0 or landing.list_files(config.FLIGHTS_SOURCE):
        return
    first = date.fromisoformat(config.DAILY.get_first_partition_key())
    publish(landing, first, first + timedelta(days=days - 1))
    print(f"landed the first {days} days of data in {landing.url}", flush=True)


def _dev(args: argparse.Namespace) -> int:
    from ml_assets.instance import instance_yaml

    _seed_landing_zone(args.seed_days)
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    if "DAGSTER_HOME" not in os.environ:  # a DAGSTER_HOME of the user's keeps its own config
        (home / "dagster.yaml").write_text(instance_yaml(home))
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("ML_ASSETS_HOME", str(ml_assets_home()))
    command = [
        sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"),
        "--host", args.host, "--port", str(args.port),
    ]  # fmt: skip
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={home})", flush=True)
    os.execvp(command[0], command)


def _mlflow_ui(args: argparse.Namespace) -> int:
    from ml_assets.modeling.tracking import mlflow_dir, tracking_uri

    uri = tracking_uri()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", args.host, "--port", str(args.port)]  # fmt: skip
    if uri.startswith("sqlite"):
        command += ["--default-artifact-root", (mlflow_dir() / "artifacts").as_uri()]
    print(f"MLflow UI on http://{args.host}:{args.port} ({uri})", flush=True)
    os.execvp(command[0], command)


def _serve(args: argparse.Namespace) -> int:
    import mlflow
    import uvicorn

    from ml_assets.home import online_store_url
    from ml_assets.modeling.tracking import tracking_uri
    from ml_assets.pipelines.flights.serving import served_model
    from resources.table_snapshots import TableSnapshots
    from serving.app import create_app
    from serving.settings import admin_token

    mlflow.set_tracking_uri(tracking_uri())
    app = create_app(
        served_model(args.max_batch), TableSnapshots(online_store_url()), admin_token()
    )
    print(f"prediction service on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(
        app, host=args.host, port=args.port, loop="uvloop", http="httptools",
        access_log=False, log_level=args.log_level,
    )  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    from ml_assets.pipelines.flights.publish import FAULTS
    from serving.settings import DEFAULT_HOST, DEFAULT_PORT

    parser = argparse.ArgumentParser(prog="ml-assets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    publish = commands.add_parser(
        "publish", help="land NYC flights 2013 exports (one flights and one weather file per day)"
    )
    publish.add_argument("--start", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    publish.add_argument("--end", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    publish.add_argument(
        "--fault", choices=sorted(FAULTS), help="land damaged files, for testing bad input"
    )
    publish.set_defaults(run=_publish)

    dev = commands.add_parser("dev", help="start the Dagster UI and daemon on embedded defaults")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument(
        "--seed-days",
        type=int,
        default=7,
        help="if nothing has landed yet, land this many days first (0 to start empty)",
    )
    dev.set_defaults(run=_dev)

    mlflow_ui = commands.add_parser("mlflow-ui", help="the MLflow UI on the platform's store")
    mlflow_ui.add_argument("--host", default="127.0.0.1")
    mlflow_ui.add_argument("--port", type=int, default=5000)
    mlflow_ui.set_defaults(run=_mlflow_ui)

    serve = commands.add_parser("serve", help="the prediction service for the flights champion")
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--max-batch", type=int, default=1000, help="most flights per request")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=_serve)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
