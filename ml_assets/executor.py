"""The platform's default executor: Dagster's, with step processes forked from a forkserver.

Dagster's default executor runs each step in a freshly *spawned* process that imports the code
location again (pandas, Pandera, Dagster: ~2.5 s, more while other steps compete for the CPU).
With ``forkserver``, one server process per run imports the code location once and each step
process is forked from it. Dagster would preload the job's module by itself only for a job
loaded through a plain module pointer, which neither the CLI's ``-m`` nor a workspace gives, so
the module is named here. A run can still choose ``in_process`` or set its own
``multiprocess`` options, ``start_method`` included.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

CODE_LOCATION = "ml_assets.definitions"
FORKSERVER = {"forkserver": {"preload_modules": [CODE_LOCATION]}}


def _forkserver_unless_chosen(config: Mapping[str, Any]) -> Mapping[str, Any]:
    if "multiprocess" in config:
        return {"multiprocess": {"start_method": FORKSERVER, **config["multiprocess"]}}
    return config


forkserver_or_in_process_executor = dg.multi_or_in_process_executor.configured(
    _forkserver_unless_chosen,
    name="forkserver_or_in_process_executor",
    config_schema=dg.multi_or_in_process_executor.config_schema.as_field(),
)
