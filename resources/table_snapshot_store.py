"""The online feature snapshots as a resource: where assets write table snapshots."""

import dagster as dg

from resources.table_snapshots import TableSnapshots


class TableSnapshotStore(dg.ConfigurableResource):
    """Where assets write table snapshots (for example the online feature store)."""

    base_url: str

    def snapshots(self) -> TableSnapshots:
        return TableSnapshots(self.base_url)
