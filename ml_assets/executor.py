"""The platform's default executor: Dagster's, with step processes forked from a forkserver.

Dagster's default executor runs each step in a freshly *spawned* process that imports the code
location again (pandas, Pandera, Dagster: ~2.5 s, more while other steps compete for the CPU).
With ``forkserver``, one server process per run imports the code location once and each step
process is forked from it. A run can still choose ``in_process`` or set its own
``multiprocess`` options, ``start_method`` included.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg


def _forkserver_unless_chosen(config: Mapping[str, Any]) -> Mapping[str, Any]:
    if "multiprocess" in config:
        return {"multiprocess": {"start_method": {"forkserver": {}}, **config["multiprocess"]}}
    return config


forkserver_or_in_process_executor = dg.multi_or_in_process_executor.configured(
    _forkserver_unless_chosen,
    name="forkserver_or_in_process_executor",
    config_schema=dg.multi_or_in_process_executor.config_schema.as_field(),
)
