"""Issue 27, "nothing lost, nothing escapes" (part 3): hostile inputs to the CLI, the Restore
worker, the dashboard and bundles are refused with one line, never followed outside, never shown as
live Markdown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dip.metrics import to_uint8
from pipeline.cli import app

runner = CliRunner()
FAST = ["--iterations", "2", "--preset", "quick", "--device", "cpu", "--log-every", "1", "--snapshots", ""]


def _one_line_error(result, needle: str) -> None:
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert needle in lines[0], lines[0]


@pytest.fixture
def img(tmp_path: Path, camera64: np.ndarray) -> Path:
    folder = tmp_path / "img"
    folder.mkdir()
    Image.fromarray(to_uint8(camera64)).save(folder / "c.png")
    Image.fromarray(to_uint8(camera64)).save(folder / "d.png")
    return folder


# --- 1. --status never replaces an input or a file that is not dip's own status -------------------

@pytest.mark.parametrize("status, needle", [("c.json", "would overwrite the input"), ("d.png", "must end in .json"),
                                            ("e.json", "is not a status file of dip")])
def test_status_never_replaces_an_input_or_a_users_file(tmp_path: Path, img: Path, status: str, needle: str) -> None:
    (img / "e.json").write_text('{"mine": 1}')
    (img / "e.png").write_bytes(b"mine")
    before = {p.name: p.read_bytes() for p in img.iterdir()}
    result = runner.invoke(app, ["restore", str(img / "c.png"), "--out", str(tmp_path / "r3"), "--status", str(img / status), *FAST])
    _one_line_error(result, needle)
    assert {p.name: p.read_bytes() for p in img.iterdir()} == before
    assert not (tmp_path / "r3").exists()


def test_status_image_of_a_users_png_is_refused(tmp_path: Path, img: Path) -> None:
    """d.png is not an input here, but it is the user's: --status img/d.json would replace it."""
    result = runner.invoke(app, ["restore", str(img / "c.png"), "--out", str(tmp_path / "r3"), "--status", str(img / "d.json"), *FAST])
    _one_line_error(result, "is not a status file of dip")


def test_status_replaces_its_own_earlier_output(tmp_path: Path, img: Path) -> None:
    status = tmp_path / "s" / "progress.json"
    for out in ("r1", "r2"):  # the second run replaces the first run's status and image
        result = runner.invoke(app, ["restore", str(img / "c.png"), "--out", str(tmp_path / out), "--status", str(status), *FAST])
        assert result.exit_code == 0, result.output
    assert status.is_file() and status.with_suffix(".png").is_file()
