"""The real data under the plausibility rules: what they reject or flag, and what they catch.

Run as ``.venv/bin/python benchmarks/plausibility.py [--quick]`` from the project root. It cleans
the real 2013 flights and weather day by day and the real taxi months month by month with the
pipelines' own clean functions, each partition judged against the accepted partitions before it
(as the clean assets judge a single-run backfill), and prints per plausibility rule the rows
rejected or flagged and what the partitions were judged against. Then, per rule, it damages one
partition the way the rule is for (a route's distance in kilometres on some of its rows, one
station in Celsius, one company in kilometres) and prints whether the rule caught it.

A real row rejected by a plausibility rule, or a damage its rule does not catch, is a failed
check (exit code 1): a real year must not lose a row to them. ``--quick`` cleans ten days (and
the four months), for the test suite.
"""

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta

import pandas as pd
from _common import Checks, declaration

from ml_assets.data.cleaning import Cleaned, parse_landed_csv, parse_landed_parquet
from ml_assets.data.plausibility import AcceptedHistory, Judgement

KM_PER_MILE = 1.609344


def _flights_days(source: str, days: list[date]) -> dict[date, pd.DataFrame]:
    from ml_assets.pipelines.flights.publish import source_table

    table = source_table(source)
    stamp = table["year"] + "-" + table["month"].str.zfill(2) + "-" + table["day"].str.zfill(2)
    wanted = {day.isoformat(): day for day in days}
    return {
        wanted[key]: parse_landed_csv(rows.to_csv(index=False).encode())
        for key, rows in table.groupby(stamp)
        if key in wanted
    }


def _run(
    name: str,
    partitions: dict[date, pd.DataFrame],
    clean: Callable[..., Cleaned],
    rules: object,
    previous: Callable[[str], list[str]],
    references: dict[str, pd.DataFrame],
) -> tuple[Counter, Counter, Counter, dict, float]:
    """Clean ``partitions`` in order with the accepted history carried along; the rows each
    plausibility rule hit (by rule and action), the judgements' bases, the partitions with
    hits, the nearest approach to each rule's bar (and where) and the seconds spent."""
    history = AcceptedHistory(rules, lambda key: None)  # type: ignore[arg-type]
    hits: Counter[tuple[str, str]] = Counter()
    bases: Counter[tuple[str, str]] = Counter()
    partitions_hit: Counter[tuple[str, str]] = Counter()
    nearest: dict[str, tuple[float, str]] = {}
    started = time.perf_counter()
    for day, raw in sorted(partitions.items()):
        key = day.isoformat()
        result = clean(raw, day, references, history.before(previous(key)))
        history.add(key, result.clean)
        for judgement in result.plausibility:
            hits[judgement.rule, judgement.action] += judgement.rows
            partitions_hit[judgement.rule, judgement.action] += bool(judgement.rows)
            bases[judgement.rule, _basis_kind(judgement)] += 1
            if judgement.nearest >= nearest.get(judgement.rule, (0.0, ""))[0]:
                nearest[judgement.rule] = (judgement.nearest, key)
    return hits, bases, partitions_hit, nearest, time.perf_counter() - started


def _basis_kind(judgement: Judgement) -> str:
    """What a partition was judged against, in short: history, peers only or itself."""
    text = judgement.basis
    if "peers only" in text or text.startswith("0 of"):
        return "peers only" if "peers only" in text else "the partition alone"
    return "history" if "history" in text or "accepted partitions" in text else text


def _caught(
    clean: Callable[..., Cleaned],
    rules: object,
    partitions: dict[date, pd.DataFrame],
    damage: Callable[[pd.DataFrame], pd.DataFrame],
    previous: Callable[[str], list[str]],
    references: dict[str, pd.DataFrame],
) -> Judgement | None:
    """The judgement of the last partition, damaged, after the window before it as landed."""
    history = AcceptedHistory(rules, lambda key: None)  # type: ignore[arg-type]
    days = sorted(partitions)
    window = set(previous(str(days[-1])))
    for day in [d for d in days[:-1] if d.isoformat() in window]:
        history.add(day.isoformat(), clean(partitions[day], day, references).clean)
    last = days[-1]
    result = clean(damage(partitions[last]), last, references, history.before(previous(str(last))))
    return next((j for j in result.plausibility if j.rows), None)


def _scaled(
    rows: pd.DataFrame, columns: list[str], where: pd.Series, change: Callable, digits: int = 2
) -> pd.DataFrame:
    """``rows`` with ``columns`` changed by ``change`` where ``where`` holds, as an export
    would write them (``digits`` decimals)."""
    changed = rows.copy()
    for column in columns:
        values = pd.to_numeric(rows[column], errors="coerce")[where]
        text = change(values).round(digits).astype(str)
        changed.loc[where, column] = text.str.removesuffix(".0") if digits == 0 else text
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="ten days and the four months")
    args = parser.parse_args()

    from ml_assets.pipelines.flights import config
    from ml_assets.pipelines.flights.cleaning import clean_flights, clean_weather
    from ml_assets.pipelines.flights.publish import reference_tables
    from ml_assets.pipelines.taxi.cleaning import TRIPS, clean_trips
    from ml_assets.pipelines.taxi.publish import trips

    declared = config.DECLARATION
    first = declared.partitions.start
    count = 10 if args.quick else (declared.partitions.end - first).days
    days = [first + timedelta(days=n) for n in range(count)]
    references = reference_tables()
    checks = Checks()
    header = f"{'rule':<24} {'action':<7} {'partitions':>10} {'rows hit':>8} {'with hits':>9}"
    print(f"{header} {'nearest/bar':>11}  judged against")

    def report(label: str, runs: tuple[Counter, Counter, Counter, dict, float], total: int) -> None:
        hits, bases, partitions_hit, nearest, seconds = runs
        for (rule, action), rows in sorted(hits.items()):
            against = ", ".join(f"{b} {n}" for (r, b), n in sorted(bases.items()) if r == rule)
            closest, where = nearest[rule]
            print(
                f"{rule:<24} {action:<7} {total:>10} {rows:>8} "
                f"{partitions_hit[rule, action]:>9} {closest:>11.2f}  {against} (nearest {where})"
            )
            checks.require(
                action != "reject" or not rows, f"{label}: {rule} rejected {rows} real rows"
            )
        print(f"  ({label}: {total} partitions cleaned in {seconds:.1f} s)")

    by_source = {}
    for source, clean, rules in (
        (config.FLIGHTS_SOURCE, clean_flights, config.FLIGHTS),
        (config.WEATHER_SOURCE, clean_weather, config.WEATHER),
    ):
        partitions = _flights_days(source, days)
        by_source[source] = partitions
        window = rules.history_partitions

        def previous(key: str, window: int = window) -> list[str]:
            return declared.partitions.previous_keys(key, window)

        report(
            f"flights {source}",
            _run(source, partitions, clean, rules, previous, references),
            len(partitions),
        )

    taxi = declaration("taxi")
    all_trips = trips()
    months = {  # as the publisher exports them: Parquet, typed
        date(2022, n, 1): parse_landed_parquet(
            all_trips[all_trips["month"] == name].to_parquet(index=False)
        )
        for n, name in enumerate(["Jan", "Feb", "Mar", "Apr"], start=1)
    }

    def previous_months(key: str) -> list[str]:
        return taxi.partitions.previous_keys(key, TRIPS.history_partitions)

    report("taxi trips", _run("trips", months, clean_trips, TRIPS, previous_months, {}), 4)

    print("\ncaught in a damaged copy of the last partition:")
    flights = by_source[config.FLIGHTS_SOURCE]
    last = flights[max(flights)]
    route = last.groupby(["origin", "dest"]).size().idxmax()
    on_route = (last["origin"] == route[0]) & (last["dest"] == route[1])
    some = on_route & (on_route.cumsum() <= max(1, on_route.sum() // 3))
    weather = by_source[config.WEATHER_SOURCE]
    cases = [
        (
            f"{'-'.join(route)} distance in km on {int(some.sum())} of {int(on_route.sum())} rows",
            clean_flights,
            config.FLIGHTS,
            flights,
            lambda rows: _scaled(rows, ["distance"], some, lambda v: v * KM_PER_MILE, 0),
            config.FLIGHTS.history_partitions,
            references,
        ),
        (
            "JFK temperature and dew point in Celsius",
            clean_weather,
            config.WEATHER,
            weather,
            lambda rows: _scaled(
                rows, ["temp", "dewp"], rows["origin"] == "JFK", lambda v: (v - 32) * 5 / 9
            ),
            config.WEATHER.history_partitions,
            references,
        ),
        (
            "Sun Taxi distances in km (April)",
            clean_trips,
            TRIPS,
            months,
            lambda rows: _scaled(
                rows, ["distance"], rows["company"] == "Sun Taxi", lambda v: v * KM_PER_MILE
            ),
            TRIPS.history_partitions,
            {},
        ),
    ]
    for label, clean, rules, partitions, damage, window, refs in cases:
        parts = taxi.partitions if clean is clean_trips else declared.partitions

        def previous(key: str, parts=parts, window: int = window) -> list[str]:
            return parts.previous_keys(key, window)

        judgement = _caught(clean, rules, partitions, damage, previous, refs)
        verdict = (
            f"{judgement.rule} {judgement.action}s {judgement.rows} rows ({judgement.detail})"
            if judgement
            else "not caught"
        )
        print(f"  {label}: {verdict}")
        checks.require(judgement is not None, f"{label}: not caught")
    return checks.report()


if __name__ == "__main__":
    sys.exit(main())
