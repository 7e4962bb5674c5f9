"""The sweep's report.html in headless Chromium: loads without console errors, every plot and player is there, and a
missing media file is flagged on the page. Skipped when Chromium is not installed (`apt-get install chromium`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec.baselines import BaselineSetting, missing_tools
from codec.sweep import run_sweep

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")


def chromium(page: Path, profile: Path, *extra: str) -> tuple[str, list[str]]:
    """Runs headless Chromium on `page`; returns (stdout, the console messages it logged)."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", *extra, page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    from tests.conftest import tiny_frame_codec

    folder = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)
    t = np.arange(24000) / 24000
    for name, pitch in (("speech_x.wav", 140), ("music_y.wav", 440)):
        wav = 0.2 * np.sin(2 * np.pi * pitch * t) * np.sin(np.pi * 2 * t) ** 2 + 0.01 * rng.standard_normal(t.shape)
        sf.write(str(folder / name), wav, 24000)
    baselines = tuple(s for s in (BaselineSetting("opus", 6), BaselineSetting("codec2", 3.2))
                      if not missing_tools(s.system))
    result = run_sweep([folder / "speech_x.wav", folder / "music_y.wav"], tiny_frame_codec(), folder / "report",
                       bandwidths=[1.5, 3], baselines=baselines, dnsmos=False, progress=False)
    return Path(result.report_html).parent, len(result.rows)


def test_every_linked_file_exists(report_dir):
    out, rows = report_dir
    page = (out / "report.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert sources and all((out / s).is_file() for s in sources)
    assert page.count("<audio ") == rows  # one player per row: originals and every reconstruction
    assert page.count("<img ") == 4  # speech and music quality, codebooks, bitrates


def test_loads_in_chromium_without_errors(report_dir, tmp_path):
    out, rows = report_dir
    dom, console = chromium(out / "report.html", tmp_path / "profile", "--dump-dom")
    assert console == []
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-images-loaded="4"' in body and "data-media-errors" not in body
    assert dom.count("<audio ") == rows
    shot = tmp_path / "report.png"
    chromium(out / "report.html", tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_missing_media_is_flagged_on_the_page(report_dir, tmp_path):
    out, _ = report_dir
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "plots" / "codebooks.png").unlink()
    next((copy / "audio").rglob("*.flac")).unlink()
    dom, console = chromium(copy / "report.html", tmp_path / "profile", "--dump-dom")
    assert console == []
    assert 'data-media-errors="2"' in dom and 'data-images-loaded="3"' in dom
    assert re.search(r'<div id="missing">2 image/audio file\(s\) could not be loaded', dom)
