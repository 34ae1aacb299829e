"""S3 under faults: the platform's resources (``resources.builder.platform_resources``) on a
moto server behind a proxy that throttles (503 SlowDown) or fails (500) requests
(``tests/s3_fault_proxy.py``). Transient errors are retried and the run succeeds with every
row once; persistent ones fail the run naming the object; a reader never sees half an object.
"""

import io
import os
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import s3fs
from s3_fault_proxy import FaultProxy, Faults

from ml_assets.home import LANDING_ENV_VAR, ONLINE_STORE_ENV_VAR, WAREHOUSE_ENV_VAR
from ml_assets.pipelines import declaration, names
from ml_assets.pipelines.flights.assets import data_assets, key
from ml_assets.pipelines.flights.publish import day_keys, publish, source_table
from resources.builder import platform_resources
from resources.landing_zone import default_landing_zone
from resources.paths import MAX_ATTEMPTS_ENV_VAR, read_bytes, to_upath, write_bytes_atomically

pytestmark = pytest.mark.integration

DAYS = day_keys(date(2013, 1, 1), date(2013, 1, 3))
TABLES = [key("planes"), key("airports"), key("airlines")]
DATA_LAYERS = [
    key(name)
    for name in ("raw_flights", "raw_weather", "flights_clean", "flights_rejected",
                 "weather_clean", "weather_rejected", "flight_features")
]  # fmt: skip


@pytest.fixture
def s3_proxy(s3_bucket: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The fault proxy in front of the moto server, every AWS client pointed at it, and the
    platform's landing zone, warehouse and online store in the bucket."""
    with FaultProxy(os.environ["AWS_ENDPOINT_URL"]) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        for variable, prefix in (
            (LANDING_ENV_VAR, "landing"),
            (WAREHOUSE_ENV_VAR, "warehouse"),
            (ONLINE_STORE_ENV_VAR, "online"),
        ):
            monkeypatch.setenv(variable, f"s3://{s3_bucket}/{prefix}")
        s3fs.S3FileSystem.clear_instance_cache()
        try:
            yield proxy
        finally:
            s3fs.S3FileSystem.clear_instance_cache()


def _materialize(
    instance: dg.DagsterInstance, selection: list, **kwargs
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        data_assets,
        selection=selection,
        resources=platform_resources([declaration(name) for name in names()]),
        instance=instance,
        raise_on_error=False,
        **kwargs,
    )


def _rows(bucket: str, asset: str, day: str) -> int:
    return len(pd.read_parquet(io.BytesIO(read_bytes(
        to_upath(f"s3://{bucket}/warehouse/flights/{asset}/{day}.parquet")))))  # fmt: skip


def _published_rows(day: str) -> int:
    flights = source_table("flights")
    d = date.fromisoformat(day)
    return int(((flights["year"] == str(d.year)) & (flights["month"] == str(d.month))
                & (flights["day"] == str(d.day))).sum())  # fmt: skip


@pytest.mark.parametrize(
    "faults",
    [
        Faults(share=0.2, status=503),
        Faults(share=0.3, status=500, methods=frozenset({"PUT"}), after_forwarding=True),
    ],
    ids=["20% of requests throttled", "30% of PUTs applied but answered 500"],
)
@pytest.mark.slow
def test_transient_errors_are_retried_and_every_row_is_written_once(
    s3_proxy: FaultProxy, s3_bucket: str, instance: dg.DagsterInstance, faults: Faults
) -> None:
    publish(default_landing_zone(), DAYS)
    s3_proxy.faults = faults
    assert _materialize(instance, TABLES).success
    result = _materialize(
        instance,
        DATA_LAYERS,
        tags={"dagster/asset_partition_range_start": DAYS[0],
              "dagster/asset_partition_range_end": DAYS[-1]},
    )  # fmt: skip
    s3_proxy.faults = Faults()
    assert result.success, [e.message for e in result.get_step_failure_events()]
    injected = s3_proxy.injected()
    print(f"injected failures by method: {dict(injected)}; requests: {len(s3_proxy.requests)}")
    assert sum(injected.values()) >= 5
    for day in DAYS:
        raw, clean, rejected = (
            _rows(s3_bucket, asset, day)
            for asset in ("raw_flights", "flights_clean", "flights_rejected")
        )
        assert raw == _published_rows(day) and clean + rejected == raw, day
        assert _rows(s3_bucket, "flight_features", day) == clean, day


def test_persistent_errors_fail_the_run_naming_the_object(
    s3_proxy: FaultProxy,
    s3_bucket: str,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every read answered 500: the step fails after the configured attempts (here 2), and the
    failure names the landed file it could not read."""
    publish(default_landing_zone(), DAYS[:1])
    monkeypatch.setenv(MAX_ATTEMPTS_ENV_VAR, "2")
    s3_proxy.faults = Faults(share=1.0, status=500, methods=frozenset({"GET"}))
    began = time.monotonic()
    result = _materialize(instance, [key("raw_flights")], partition_key=DAYS[0])
    elapsed = time.monotonic() - began
    assert not result.success
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    text = error.to_string()
    landed = f"s3://{s3_bucket}/landing/flights/{DAYS[0]}.csv"
    assert f"reading {landed} failed" in text, text
    assert "InternalError" in text or "injected by the fault proxy" in text, text
    attempts = len(s3_proxy.seen("GET", f"/landing/flights/{DAYS[0]}.csv"))
    print(f"failed after {attempts} GETs in {elapsed:.1f} s")
    assert attempts == 2
    assert elapsed < 60


def test_a_reader_never_sees_a_partial_object(
    s3_proxy: FaultProxy, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer replaces one object again and again (each version a different size) while
    requests fail and a reader reads it in a loop: every read is one whole version;
    each write is one PUT (no multipart upload); a write that cannot succeed leaves the last
    version in place."""
    path = to_upath(f"s3://{s3_bucket}/warehouse/t/object.parquet")

    def version(n: int) -> bytes:
        buffer = io.BytesIO()
        pd.DataFrame({"version": [n] * (5_000 * n)}).to_parquet(buffer, index=False)
        return buffer.getvalue()

    write_bytes_atomically(path, version(1))
    s3_proxy.faults = Faults(share=0.3, status=503)
    done = threading.Event()
    reads: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def reader() -> None:
        while not done.is_set():
            try:
                frame = pd.read_parquet(io.BytesIO(read_bytes(path)))
            except BaseException as error:  # a torn object, or a read that gave up
                errors.append(error)
                return
            reads.append((int(frame["version"].iloc[0]), len(frame)))

    thread = threading.Thread(target=reader)
    thread.start()
    writes, deadline = 1, time.monotonic() + 120
    try:
        while (writes < 20 or len(reads) < 15) and not errors and time.monotonic() < deadline:
            writes += 1
            write_bytes_atomically(path, version(writes % 10 + 1))
    finally:
        done.set()
        thread.join()
    assert not errors, errors
    assert len(reads) >= 15 and all(rows == 5_000 * n for n, rows in reads), reads
    assert len({n for n, _ in reads}) >= 3, reads  # it read while versions changed
    assert not [r for r in s3_proxy.requests if r.method == "POST"]  # no multipart upload
    puts = s3_proxy.seen("PUT", "/warehouse/t/object.parquet")
    assert len([r for r in puts if not r.injected]) == writes
    print(f"{len(reads)} whole reads; {len(puts)} PUTs for {writes} writes; "
          f"injected {dict(s3_proxy.injected())}")  # fmt: skip

    monkeypatch.setenv(MAX_ATTEMPTS_ENV_VAR, "2")
    s3_proxy.faults = Faults(share=1.0, status=503, methods=frozenset({"PUT"}))
    with pytest.raises(OSError, match=f"writing {path} failed"):
        write_bytes_atomically(to_upath(str(path)), version(1))
    s3_proxy.faults = Faults()
    assert len(pd.read_parquet(io.BytesIO(read_bytes(path)))) == 5_000 * (writes % 10 + 1)
