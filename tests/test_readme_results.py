"""README's Results block is what `dip readme` generates from the committed bundles (or, with none,
the pending text): never a hand-edited number."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from typer.testing import CliRunner

from conftest import copy_settings
from pipeline.cli import app
from pipeline.outputs import readme

ROOT = Path(__file__).resolve().parents[1]


def test_readmes_block_is_what_the_committed_bundles_give() -> None:
    """Fails when a bundle was merged (or params.yaml changed) without `dip readme`, or the block was edited by hand."""
    text = (ROOT / "README.md").read_text()
    assert readme.current(text) == readme.block(ROOT), "README's Results block is out of date: run `dip readme`"


def test_without_a_bundle_every_experiment_of_the_paper_profile_is_pending(tmp_path: Path) -> None:
    copy_settings(tmp_path)
    (tmp_path / "results-published" / "notes").mkdir(parents=True)  # a folder without a bundle manifest is no bundle
    block = readme.block(tmp_path)
    experiments = yaml.safe_load((ROOT / "params.yaml").read_text())["profiles"]["paper"]["experiments"]
    listed = re.findall(r"^\| `([^`]+)` \|", block, re.M)
    assert listed == experiments
    assert "no result is published yet" in block and "GPU" in block and "in short windows" in block
    assert "| `inpaint_p50` | Table 1: inpainting of 50% missing pixels (i.i.d.) | 11 (inpainting11) |" in block
    assert "| `sr_x4` | Table 2: 4x super-resolution | 19 (set5, set14) |" in block
    assert not re.search(r"\d+\.\d\d", block), "no PSNR before anything is fitted"


def test_dip_readme_rewrites_only_the_block_and_check_says_when_it_is_stale(tmp_path: Path) -> None:
    copy_settings(tmp_path)
    page = tmp_path / "README.md"
    page.write_text(f"# Title\n\nbefore\n\n{readme.BEGIN}\n| stale | 99.99 |\n{readme.END}\n\nafter\n")
    runner = CliRunner()
    stale = runner.invoke(app, ["readme", "--readme", str(page), "--check"])
    assert stale.exit_code == 1 and "out of date" in stale.output and "99.99" in page.read_text()
    done = runner.invoke(app, ["readme", "--readme", str(page)])
    assert done.exit_code == 0, done.output
    text = page.read_text()
    assert text.startswith("# Title\n\nbefore\n\n<!-- results:begin -->\n") and text.endswith("<!-- results:end -->\n\nafter\n")
    assert "99.99" not in text and readme.current(text) == readme.block(tmp_path)
    assert runner.invoke(app, ["readme", "--readme", str(page), "--check"]).exit_code == 0
    page.write_text("# no markers\n")
    missing = runner.invoke(app, ["readme", "--readme", str(page)])
    assert missing.exit_code == 2 and missing.output.startswith(f"error: {page} has no single") and "results:begin" in missing.output
    assert page.read_text() == "# no markers\n"
