"""``ml-assets``: the platform's command line.

- ``ml-assets pipelines`` lists the registered pipelines, each validated as a definitions load
  validates it (exit 1, naming the file, key and reason, when one does not load);
- ``ml-assets publish PIPELINE [--start DATE] [--end DATE] [--fault KIND]
  [--to sql|rest|stream] [--queue QUEUE]`` lands a pipeline's exports for the partitions in
  [start, end] (all of them by default), or writes them into the databases its upstream keeps
  them in, or serves them through its upstream's API until stopped, or publishes them as events
  on the stream its upstream sends them to;
- ``ml-assets dev`` starts the Dagster UI and daemon on the embedded defaults (landing the first
  partitions of every pipeline whose landing zone is empty), and stops them and the prediction
  services they started when it is stopped;
- ``ml-assets mlflow-ui`` opens the MLflow UI on the platform's tracking store;
- ``ml-assets serve PIPELINE`` starts the prediction service for the pipeline's champion;
- ``ml-assets rollout PIPELINE [--promote | --roll-back]`` shows where a staged rollout
  stands and what the declared bars decide, or carries out a person's decision;
- ``ml-assets worker [--name NAME] [--concurrency N]`` runs a Celery step worker (the
  ``ML_ASSETS_EXECUTOR=celery`` profile);
- ``ml-assets prod up | down | status`` starts, stops or checks the production profile on
  this machine (``ml_assets.prod``);
- ``ml-assets new-pipeline NAME [--source files|sql|rest|stream]`` writes a runnable skeleton of a
  new pipeline whose source is of that kind.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from datetime import date
from typing import Any

from ml_assets.home import PROJECT_ROOT, dagster_home, ml_assets_home

STOP_GRACE_S = 4.0
"""``ml-assets dev`` stops what it started with SIGTERM, then SIGKILL after this many seconds
(twice at most: a service a deploy started while Dagster stopped gets its own grace)."""


def _partition_keys(name: str, start: date | None, end: date | None) -> list[str]:
    """The pipeline's partition keys whose period starts in [start, end]."""
    from ml_assets import pipelines
    from ml_assets.contract.dagster_terms import partitions_definition

    keys = partitions_definition(pipelines.declaration(name).partitions).get_partition_keys()
    return [
        key
        for key in keys
        if (start is None or date.fromisoformat(key) >= start)
        and (end is None or date.fromisoformat(key) <= end)
    ]


def _publish(args: argparse.Namespace) -> int:
    from ml_assets import pipelines
    from resources.landing_zone import default_landing_zone

    pipeline = pipelines.load(args.pipeline)
    if args.fault is not None and args.fault not in pipeline.faults:
        print(
            f"unknown fault {args.fault!r}; {args.pipeline} can land {', '.join(pipeline.faults)}",
            file=sys.stderr,
        )
        return 2
    keys = _partition_keys(args.pipeline, args.start, args.end)
    if not keys:
        print(f"no {args.pipeline} partition starts in {args.start}…{args.end}", file=sys.stderr)
        return 2
    if args.to == "sql":
        return _publish_to_databases(pipeline, keys)
    if args.to == "rest":
        return _publish_to_api(pipeline, keys)
    if args.to == "stream":
        return _publish_to_stream(pipeline, keys, args.queue)
    landing = default_landing_zone()
    written = pipeline.publish(landing, keys, fault=args.fault)
    print(f"landed {len(written)} files of {args.pipeline} ({keys[0]}…{keys[-1]}) in {landing.url}")
    return 0


def _url_of(kind: Any) -> Any:
    """The URL of a connection of ``kind`` (a ``NamedConnection`` class) by name, from the
    environment."""

    def url_of(connection: str) -> str:
        url = os.environ.get(kind.url_variable(connection))
        if not url:
            raise SystemExit(f"set {kind.url_variable(connection)} to the {connection} URL")
        return url

    return url_of


def _publish_to_databases(pipeline: Any, keys: list[str]) -> int:
    name = pipeline.declaration.name
    if pipeline.publish_to_databases is None:
        print(f"{name} has no publisher to databases; publish its files", file=sys.stderr)
        return 2
    from resources.sql_connection import SqlConnection

    rows = pipeline.publish_to_databases(_url_of(SqlConnection), keys)
    print(f"wrote {rows} rows of {name} ({keys[0]}…{keys[-1]}) into its databases")
    return 0


def _publish_to_api(pipeline: Any, keys: list[str]) -> int:
    from resources.rest_connection import token_file_variable, token_variable, url_variable
    from resources.secrets import read_secret

    name = pipeline.declaration.name
    if pipeline.publish_to_api is None:
        print(f"{name} has no upstream API; publish its files", file=sys.stderr)
        return 2

    def settings_of(connection: str) -> tuple[str, str]:
        url = os.environ.get(url_variable(connection))
        token = read_secret(
            os.environ.get(token_variable(connection)),
            os.environ.get(token_file_variable(connection)),
        )
        if not url or not token:
            raise SystemExit(
                f"set {url_variable(connection)} (where to serve, http://127.0.0.1:PORT) and "
                f"{token_variable(connection)} (or ..._TOKEN_FILE) to serve the {connection} API"
            )
        return url, token

    api = pipeline.publish_to_api(settings_of, keys)
    stops = {signal.SIGINT, signal.SIGTERM}
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # waited for below, not raised
    try:
        with api:
            served = f"{name} ({keys[0]}…{keys[-1]}) at {api.url}"
            print(f"serving {served}; stop with Ctrl-C", flush=True)
            signal.sigwait(stops)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return 0


def _publish_to_stream(pipeline: Any, keys: list[str], queue: str | None) -> int:
    name = pipeline.declaration.name
    if pipeline.publish_to_stream is None:
        print(f"{name} has no publisher to a stream; publish its files", file=sys.stderr)
        return 2
    where = {"queue": queue} if queue else {}
    from resources.stream_connection import StreamConnection

    events = pipeline.publish_to_stream(_url_of(StreamConnection), keys, **where)
    print(f"published {events} events of {name} ({keys[0]}…{keys[-1]}) to its stream")
    return 0


def first_model_partitions(name: str) -> int:
    """How many first partitions of pipeline ``name`` its first model needs: up to the start of
    the training window, then enough to train, validate and test."""
    from ml_assets import pipelines
    from ml_assets.contract.dagster_terms import partitions_definition

    declared = pipelines.declaration(name)
    keys = partitions_definition(declared.partitions).get_partition_keys()
    before_window = sum(key < declared.model.training.window_start for key in keys)
    return before_window + declared.model.first_training_partitions


def _seed_landing_zone(partitions: int | None) -> None:
    """Land the first partitions of every pipeline that has nothing landed yet, so its sensor
    has work: ``partitions`` of them, or (None) what its first model needs."""
    from ml_assets import pipelines
    from ml_assets.contract.dagster_terms import partitions_definition
    from ml_assets.contract.declaration import FilesSource
    from resources.landing_zone import default_landing_zone

    landing = default_landing_zone()
    for name in pipelines.names():
        declaration = pipelines.declaration(name)
        source = next((s for s in declaration.sources if s.partitioned), None)
        count = first_model_partitions(name) if partitions is None else partitions
        if not isinstance(source, FilesSource):  # read from where it lives, not landed
            continue
        if count <= 0 or landing.list_files(source.name, source.extension):
            continue
        keys = partitions_definition(declaration.partitions).get_partition_keys()[:count]
        pipelines.load(name).publish(landing, keys)
        print(f"landed {name} {keys[0]}…{keys[-1]} in {landing.url}", flush=True)


def _load_problem(name: str) -> str | None:
    """Why pipeline ``name`` fails to load as the code location loads it (the file, the key and
    the reason); None when its definitions load and validate."""
    import dagster as dg

    from ml_assets import pipelines
    from ml_assets.contract.loading import DeclarationError
    from ml_assets.platform import code_location

    try:
        dg.Definitions.validate_loadable(code_location([pipelines.load(name)]))
    except DeclarationError as error:
        return str(error)
    except Exception as error:  # whatever a definitions load would fail with
        return f"{pipelines.declaration_path(name)}: {type(error).__name__}: {error}"
    return None


def _pipelines(args: argparse.Namespace) -> int:
    """List the pipelines whose definitions load and validate, each alone and all together as
    the code location; print why any other does not (exit 1)."""
    import dagster as dg

    from ml_assets import pipelines
    from ml_assets.contract.dagster_terms import partitions_definition
    from ml_assets.platform import code_location

    problems = {name: problem for name in pipelines.names() if (problem := _load_problem(name))}
    for name in pipelines.names():
        if name in problems:
            print(problems[name], file=sys.stderr)
            continue
        declared = pipelines.declaration(name)
        keys = partitions_definition(declared.partitions).get_partition_keys()
        print(
            f"{name:<12} {declared.model.task:<22} {declared.partitions.kind} "
            f"{keys[0]}…{keys[-1]} ({len(keys)})  key prefix {declared.prefix}/  "
            f"model {declared.model.registered_model_name}  port {declared.serving.port}"
        )
    if problems:
        return 1
    try:  # what only the pipelines together can break: a key prefix or a job name twice
        loaded = [pipelines.load(name) for name in pipelines.names()]
        dg.Definitions.validate_loadable(code_location(loaded))
    except Exception as error:
        print(f"the pipelines together: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


def _use_the_platforms_instance() -> None:
    """Point ``DAGSTER_HOME`` at an instance with the platform's configuration: its
    ``dagster.yaml`` is written to the platform's own Dagster home, and to a ``DAGSTER_HOME``
    of the user's that has none yet. A user's own ``dagster.yaml`` is kept as it is, with one
    line saying which of the platform's storages it lacks and how to get them."""
    from ml_assets.instance import instance_yaml, missing_storages

    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if "DAGSTER_HOME" not in os.environ or not config.exists():
        config.write_text(instance_yaml(home))
    elif missing := missing_storages(config.read_text(), instance_yaml(home)):
        print(
            f"ml-assets: keeping your {config} as it is: it lacks the platform's "
            f"{', '.join(missing)}; for the platform's instance, move that file away and run "
            "this again (it then writes the platform's there)",
            file=sys.stderr,
            flush=True,
        )
    os.environ["DAGSTER_HOME"] = str(home)


def _dev(args: argparse.Namespace) -> int:
    """Run ``dagster dev`` until it exits or this process is asked to stop (SIGINT, SIGTERM,
    SIGHUP); then stop its process group and the prediction services the platform started on
    this home, SIGKILL for any process left after ``STOP_GRACE_S``."""
    from ml_assets.processes import stop_groups
    from resources.prediction_services import started_services

    _seed_landing_zone(args.seed_partitions)
    _use_the_platforms_instance()
    os.environ.setdefault("ML_ASSETS_HOME", str(ml_assets_home()))
    command = [
        sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"),
        "--host", args.host, "--port", str(args.port),
    ]  # fmt: skip
    print(
        f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={dagster_home()})", flush=True
    )
    asked: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda received, _: asked.append(received))
    # a group of its own: a Ctrl-C reaches this process only, which stops everything in turn
    dagster = subprocess.Popen(command, start_new_session=True)  # noqa: S603 (our argv, no shell)
    while dagster.poll() is None and not asked:
        time.sleep(0.2)
    began = time.monotonic()
    stop_groups([dagster, *started_services()], STOP_GRACE_S)
    stop_groups(started_services(), STOP_GRACE_S)  # one a deploy started meanwhile
    print(
        f"stopped Dagster and the prediction services in {time.monotonic() - began:.1f} s",
        flush=True,
    )
    return 0 if asked else dagster.returncode


def _mlflow_ui(args: argparse.Namespace) -> int:
    from ml_assets.home import mlflow_store, tracking_uri

    uri = tracking_uri()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", args.host, "--port", str(args.port)]  # fmt: skip
    if uri.startswith("sqlite"):
        command += ["--default-artifact-root", (mlflow_store() / "artifacts").as_uri()]
    print(f"MLflow UI on http://{args.host}:{args.port} ({uri})", flush=True)
    os.execvp(command[0], command)  # noqa: S606 (our own argv: this process becomes it)


def _rollout(args: argparse.Namespace) -> int:
    """Print the rollout's state and decision; with an action, run the pipeline's rollout job
    on the instance (``$DAGSTER_HOME``), so the UI records it."""
    import json

    import dagster as dg

    from jobs.rollout import build_rollout_job
    from ml_assets import pipelines
    from ml_assets.deployment import staged_rollout
    from resources.builder import platform_resources

    declared = pipelines.declaration(args.pipeline)
    resources = platform_resources([pipelines.declaration(n) for n in pipelines.names()])
    endpoint = resources["prediction_services"].endpoint(args.pipeline)
    state = staged_rollout.challenger_state(endpoint)
    if state is None:
        print(f"No version of {args.pipeline} is rolling out (or its service does not answer).")
        return 1 if (args.promote or args.roll_back) else 0
    stage, stats = state
    decision = staged_rollout.decide(stage, stats, declared.rollout)
    shown = {"stage": stage, "challenger": stats, "decision": decision.__dict__}
    print(json.dumps(shown, indent=2))
    if not (args.promote or args.roll_back):
        return 0
    _use_the_platforms_instance()
    action = "promote" if args.promote else "roll_back"
    result = build_rollout_job(declared).execute_in_process(
        run_config={"ops": {f"{declared.prefix}_advance_rollout": {"config": {"action": action}}}},
        resources=resources,
        instance=dg.DagsterInstance.get(),
        raise_on_error=False,
    )
    print(f"{action}: {'done' if result.success else 'failed'} (run {result.run_id})")
    return 0 if result.success else 1


def _worker(args: argparse.Namespace) -> int:
    """Become a Celery worker of the platform's steps (one task at a time per process)."""
    command = [sys.executable, "-m", "celery", "-A", "ml_assets.celery_worker", "worker",
               "--queues", "dagster", "--concurrency", str(args.concurrency),
               "--hostname", f"{args.name}@%h", "--loglevel", args.log_level,
               "--without-gossip", "--without-mingle"]  # fmt: skip
    os.execvp(command[0], command)  # noqa: S606 (our own argv: this process becomes it)


def _serve(args: argparse.Namespace) -> int:
    import mlflow
    import uvicorn

    from ml_assets import pipelines
    from ml_assets.home import online_store_url, prediction_log_url, tracking_uri
    from resources.table_snapshots import TableSnapshots
    from serving.app import create_app
    from serving.settings import NoAdminToken, admin_token
    from serving.spec import served_model

    try:
        token = admin_token()
    except NoAdminToken as error:
        print(f"ml-assets serve: {error}", file=sys.stderr)
        return 2
    mlflow.set_tracking_uri(tracking_uri())
    declared = pipelines.declaration(args.pipeline)
    served = served_model(declared, pipelines.serving_hooks(args.pipeline), args.max_batch)
    log_url = None if args.no_prediction_log else prediction_log_url()
    home = str(ml_assets_home())
    app = create_app(served, TableSnapshots(online_store_url()), token, log_url, home=home)
    port = args.port or declared.serving.port
    print(f"{args.pipeline} prediction service on http://{args.host}:{port}", flush=True)
    uvicorn.run(
        app, host=args.host, port=port, loop="uvloop", http="httptools",
        access_log=False, log_level=args.log_level,
    )  # fmt: skip
    return 0


def _prod(args: argparse.Namespace) -> int:
    """``prod up`` (exit 2 when refused, 1 when not ready), ``prod down``, ``prod status``."""
    from ml_assets import prod

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        if args.action == "up":
            prod.up(args.timeout, say)
        elif args.action == "down":
            prod.down(say)
        else:
            return 0 if prod.status(say) else 1
    except prod.Refused as refusal:
        print(f"ml-assets prod {args.action}: {refusal}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"ml-assets prod {args.action}: {error}", file=sys.stderr)
        return 1
    return 0


def _new_pipeline(args: argparse.Namespace) -> int:
    from ml_assets.scaffold import write_pipeline

    try:
        written = write_pipeline(args.name, force=args.force, source=args.source)
    except (ValueError, FileExistsError) as error:
        print(f"ml-assets new-pipeline: {error}", file=sys.stderr)
        return 2
    print(f"wrote pipeline {args.name!r}:")
    for path in written:
        print(f"  {path.relative_to(PROJECT_ROOT)}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line's parser (the docs' CLI reference is generated from it)."""
    from ml_assets import pipelines
    from serving.settings import DEFAULT_HOST

    registered = pipelines.names()
    from ml_assets.scaffold import SOURCE_KINDS

    parser = argparse.ArgumentParser(prog="ml-assets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(metavar="COMMAND", required=True)

    listing = commands.add_parser(
        "pipelines", help="list the registered pipelines, validating their definitions"
    )
    listing.set_defaults(run=_pipelines)

    publish = commands.add_parser("publish", help="land a pipeline's exports in the landing zone")
    publish.add_argument("pipeline", choices=registered)
    publish.add_argument("--start", type=date.fromisoformat, help="YYYY-MM-DD (default: first)")
    publish.add_argument("--end", type=date.fromisoformat, help="YYYY-MM-DD (default: last)")
    publish.add_argument("--fault", help="land damaged files, for testing bad input")
    publish.add_argument(
        "--to",
        choices=["landing", "sql", "rest", "stream"],
        default="landing",
        help="the landing zone (files), the databases the upstream keeps its data in "
        "(sql: each connection's URL from ML_ASSETS_SQL_<NAME>_URL), its API, served until "
        "stopped (rest: at ML_ASSETS_REST_<NAME>_URL with ML_ASSETS_REST_<NAME>_TOKEN), or the "
        "stream it sends events to (stream: the broker's URL from ML_ASSETS_STREAM_<NAME>_URL)",
    )
    publish.add_argument("--queue", help="the stream queue (--to stream; default: the pipeline's)")
    publish.set_defaults(run=_publish)

    dev = commands.add_parser("dev", help="start the Dagster UI and daemon on embedded defaults")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument(
        "--seed-partitions",
        type=int,
        help="land this many first partitions of each pipeline with nothing landed (0: none; "
        "default: what its first model needs)",
    )
    dev.set_defaults(run=_dev)

    mlflow_ui = commands.add_parser("mlflow-ui", help="the MLflow UI on the platform's store")
    mlflow_ui.add_argument("--host", default="127.0.0.1")
    mlflow_ui.add_argument("--port", type=int, default=5000)
    mlflow_ui.set_defaults(run=_mlflow_ui)

    serve = commands.add_parser("serve", help="the prediction service of a pipeline's champion")
    serve.add_argument("pipeline", choices=registered)
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, help="default: the pipeline's declared port")
    serve.add_argument("--max-batch", type=int, help="most items per request")
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--no-prediction-log",
        action="store_true",
        help="do not log predictions (monitoring then sees only batch predictions)",
    )
    serve.set_defaults(run=_serve)

    rollout = commands.add_parser("rollout", help="a staged rollout: where it stands, or act")
    rollout.add_argument("pipeline", choices=registered)
    act = rollout.add_mutually_exclusive_group()
    act.add_argument("--promote", action="store_true", help="make the challenger the champion")
    act.add_argument("--roll-back", action="store_true", help="take the challenger out")
    rollout.set_defaults(run=_rollout)

    worker = commands.add_parser("worker", help="a Celery worker of the platform's steps")
    worker.add_argument("--name", default="worker", help="the worker's name (NAME@host)")
    worker.add_argument("--concurrency", type=int, default=1, help="steps at once")
    worker.add_argument("--log-level", default="info")
    worker.set_defaults(run=_worker)

    prod = commands.add_parser("prod", help="the production profile on this machine (honcho)")
    prod.add_argument("action", choices=["up", "down", "status"])
    prod.add_argument(
        "--timeout", type=float, default=300.0, help="up: seconds to wait for every part"
    )
    prod.set_defaults(run=_prod)

    new = commands.add_parser("new-pipeline", help="write a runnable skeleton of a new pipeline")
    new.add_argument("name", help="the pipeline's name: lower case letters, digits, _")
    new.add_argument("--force", action="store_true", help="overwrite an existing skeleton")
    new.add_argument(
        "--source",
        choices=list(SOURCE_KINDS),
        default="files",
        help="the kind of its source: files in the landing zone, a database table (sql), a "
        "paged JSON API (rest) or events on a RabbitMQ stream (stream)",
    )
    new.set_defaults(run=_new_pipeline)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
