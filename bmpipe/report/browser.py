"""The system's Chromium, in which the reports and the browser review are checked and timed.

Always the one the system's packages installed (``apt-get install chromium``): nothing here, in the tests or
in the bench, may download a browser build.
"""

from __future__ import annotations

import shutil

#: Headless Chromium as root in a container: no sandbox, no GPU.
HEADLESS_ARGS = ("--no-sandbox", "--disable-gpu")


def system_chromium() -> str | None:
    """The path of the system's Chromium (or Chrome), None where there is none."""
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
