"""pydicom's warnings quote element values (a bad UID, an over-long name): they must never
reach a console or a log. Importing this module silences them for the process."""

from __future__ import annotations

import logging
import warnings

from pydicom import config

config.settings.reading_validation_mode = config.IGNORE
config.settings.writing_validation_mode = config.IGNORE
logging.getLogger("pydicom").setLevel(logging.CRITICAL)
logging.getLogger("pydicom").propagate = False
warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")
warnings.filterwarnings("ignore", category=UserWarning)
