"""Glue for rule scripts: logging into the rule's log file and clean failure on bad input."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from segcore.io import InputError

log = logging.getLogger("segcore")


def run_rule(main: Callable[[Any], None], smk: Any) -> None:
    """Run ``main(smk)`` with logging into ``smk.log[0]``.

    Progress output (stderr, e.g. tqdm) goes into the log file too. Errors are logged and also printed on the
    original stderr, so Snakemake's console shows the message: bad input (:class:`InputError`) as one line
    naming the file or config key, anything else with its traceback.
    """
    console = sys.stderr
    open(smk.log[0], "w").close()
    # Append mode for both writers (stderr and the logging handler) so neither overwrites the other.
    log_file = open(smk.log[0], "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    sys.stderr = log_file
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    file_handler = logging.FileHandler(smk.log[0], mode="a")
    file_handler.setFormatter(formatter)
    console_handler = logging.StreamHandler(console)
    console_handler.setLevel(logging.ERROR)
    console_handler.setFormatter(logging.Formatter(f"[rule {smk.rule}] %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[file_handler, console_handler], force=True)
    try:
        main(smk)
    except InputError as error:
        log.error("%s", error)
        sys.exit(1)
    except Exception:
        log.exception("rule %s failed", smk.rule)
        sys.exit(1)
