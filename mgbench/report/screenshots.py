"""Screenshots of the leaderboard page as a reader sees it: headless Chromium at a laptop's
1280 px and a phone's 390 px, written beside the page so that a reviewer sees the page in a diff."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from mgbench.errors import InputError

# (file name, window width, window height): the top of the page, headline and first plots.
SIZES = (("screenshot-1280.png", 1280, 2000), ("screenshot-390.png", 390, 1600))
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--force-device-scale-factor=1", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--mute-audio", "--font-render-hinting=none")


def browser() -> str:
    """The Chromium binary (Debian's `chromium`, or Google's), or an error naming the fix."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise InputError("screenshots need headless Chromium: apt-get install chromium (or leave out --screenshots)")


def shoot(page: Path, out: Path, timeout: float = 120.0) -> list[Path]:
    """Screenshots of ``page`` (an HTML file) at every width of :data:`SIZES`, into ``out``."""
    binary = browser()
    written = []
    for name, width, height in SIZES:
        target = out / name
        with tempfile.TemporaryDirectory(prefix="mgbench-chromium-") as profile:
            command = [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                       f"--screenshot={target}", page.resolve().as_uri()]
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0 or not target.is_file():
            raise RuntimeError(f"chromium could not screenshot {page} at {width} px: {done.stderr.strip()[-500:]}")
        written.append(target)
    return written
