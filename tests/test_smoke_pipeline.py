"""One partition end to end, through Dagster, on a temporary ``$ML_ASSETS_HOME``."""

import dagster as dg
import pandas as pd
import pytest

from ml_assets.pipelines.flights.assets import data_assets, key

pytestmark = pytest.mark.unit


def test_one_partition_end_to_end(published_week, resources, instance, home):
    reference = dg.materialize(
        data_assets,
        selection=[key("planes"), key("airports"), key("airlines")],
        resources=resources,
        instance=instance,
    )
    assert reference.success
    history = dg.materialize(
        data_assets,
        selection=dg.AssetSelection.groups("flights_ingest", "flights_clean")
        - dg.AssetSelection.assets(key("planes"), key("airports"), key("airlines")),
        tags={
            "dagster/asset_partition_range_start": "2013-01-01",
            "dagster/asset_partition_range_end": "2013-01-07",
        },
        resources=resources,
        instance=instance,
    )
    assert history.success
    evaluations = history.get_asset_check_evaluations()
    # per day: two checks of each raw table, four of each clean one
    assert len({(e.asset_check_key, e.partition) for e in evaluations}) == 7 * 12
    for evaluation in evaluations:  # each names its own partition's materialization
        latest = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=evaluation.asset_key, asset_partitions=[evaluation.partition]
            ),
            limit=1,
        ).records[0]
        assert evaluation.target_materialization_data.storage_id == latest.storage_id
    day = dg.materialize(
        data_assets,
        selection=dg.AssetSelection.groups("flights_ingest", "flights_clean", "flights_features")
        - dg.AssetSelection.assets(key("planes"), key("airports"), key("airlines")),
        partition_key="2013-01-08",
        resources=resources,
        instance=instance,
    )
    assert day.success
    features = pd.read_parquet(
        home / "warehouse" / "flights" / "flight_features" / "2013-01-08.parquet"
    )
    assert len(features) > 800
    assert features["route_flights_7d"].gt(0).mean() > 0.9
