"""Pieces every page shares: the results root, the profile/device badge, the "nothing yet" notice."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import streamlit as st

from dashboard import imaging, load

ROOT_KEY = "results_root"

# --- the one renderer of strings the dashboard did not write itself ---------------------------------
# File names, messages, fields of run.json / meta.json / experiment.json, report.md: any of them may
# hold Markdown (a link, an image another site serves and the browser fetches, a Streamlit directive).
# Every such string reaches st.markdown / caption / warning / … through one of these three
# (tests/test_nothing_escapes.py reads the dashboard's source to check it).

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_MARKUP = re.compile(r"([\\\[\]<>@]|:(?=//))|(?i:(www)\.)")  # links, images, HTML, directives; autolinks (://, www., @)


def md_text(value: object) -> str:
    """``value`` as text inside Markdown: the characters that make a link, an image, HTML, a Streamlit
    directive (``:red[…]``) or an autolink (``https://``, ``www.``, an e-mail address) backslash-escaped,
    so nothing of it is fetched or followed; line breaks as spaces (no heading, list or table starts)."""
    return _MARKUP.sub(_escape, _CONTROL.sub(" ", str(value)))


def md_code(value: object) -> str:
    """``value`` as one inline code span (a path, a command): a fence longer than any run of
    backticks in it, line breaks as spaces."""
    text = _CONTROL.sub(" ", str(value))
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_CODE_SPAN = re.compile(r"(`+)(?:.+?)(?<!`)\1(?!`)")


def md_document(text: str) -> str:
    """A Markdown document of the results (``metrics/report.md``) with its tables, headings and
    emphasis, but no link, image, HTML, autolink or directive outside code (escaped as by
    :func:`md_text`), so a link or image to another site shows as its text and nothing is fetched."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            lines.append(line)
            continue
        if fenced:
            lines.append(line)
            continue
        parts, last = [], 0
        for m in _CODE_SPAN.finditer(line):
            parts.append(_MARKUP.sub(_escape, line[last:m.start()]) + m.group(0))
            last = m.end()
        lines.append("".join(parts) + _MARKUP.sub(_escape, line[last:]))
    if fenced:
        lines.append("```")  # an unclosed fence stays inside the document
    return "\n".join(lines)


def _escape(m: re.Match[str]) -> str:
    return "\\" + m.group(1) if m.group(1) else m.group(2) + "\\."


EMPTY = "–"  # what an empty cell shows (Streamlit's default is "None")


def table(data_, **kwargs) -> None:
    """``st.dataframe`` with empty cells shown as "–" (its ``placeholder``, where this Streamlit
    has it; the browser otherwise writes "None" over a Styler's ``na_rep``)."""
    import inspect

    if "placeholder" in inspect.signature(st.dataframe).parameters:
        kwargs.setdefault("placeholder", EMPTY)
    st.dataframe(data_, **kwargs)


def root() -> Path:
    """The results root chosen in the sidebar (defaults to :func:`dashboard.load.resolve_root`; a
    blank field is the default too: the browser can send one when a page is switched mid-run)."""
    if not str(st.session_state.get(ROOT_KEY, "")).strip():
        st.session_state[ROOT_KEY] = str(load.resolve_root())
    return load.expand_root(str(st.session_state[ROOT_KEY]))


def safe_image(root_dir: Path, path: Path) -> tuple[bytes, np.ndarray] | str:
    """The one way the dashboard reads an image file it shows or serves (a Download button too):
    ``(bytes, pixels)``, or why not (unreadable, too large, or outside ``root_dir`` and the user-runs
    folder once links are resolved, :func:`dashboard.load.contained`)."""
    return imaging.load_image(path) if load.contained(root_dir, path) else load.OUTSIDE


def image(where, root_dir: Path, path: Path, caption: str, **kwargs) -> bool:
    """Show the PNG file ``path`` as it is, or a short warning naming it when it is unreadable or
    lies outside ``root_dir`` (:func:`safe_image`)."""
    loaded = safe_image(root_dir, path)
    if isinstance(loaded, str):
        where.warning(f"{md_text(caption)}: {md_code(load.rel(root_dir, path))} is {md_text(loaded)}.")
        return False
    where.image(loaded[0], caption=caption, output_format="PNG", **kwargs)
    return True


def run_warnings(root_dir: Path, where=st) -> None:
    """One warning listing the damaged ``run.json`` files (their runs show without those fields)."""
    problems = load.run_problems(root_dir)
    if problems:
        where.warning("Damaged run records, shown without the damaged fields:\n\n" + "\n".join(f"- {md_text(p)}" for p in problems))


def profile_badge(root_dir: Path, where=st) -> dict:
    """Show which profile and device produced the numbers; a non-paper profile is flagged loudly."""
    info = load.profile(root_dir)
    if not info:
        return info
    prof = str(info.get("profile", "unknown"))
    device = str(info.get("device", "?"))
    name = info.get("device_name") or ""
    requested = info.get("requested")
    dev_rendered = f"device {md_text(device)}" + (f" ({md_text(name)})" if name else "")
    req_rendered = f" (requested: {md_text(requested)})" if requested and requested != prof else ""
    if prof == "paper":
        where.markdown(f":green-badge[profile: paper — the paper's setting]{req_rendered} :blue-badge[{dev_rendered}]")
    else:
        where.markdown(f":orange-badge[profile: {md_text(prof)} — NOT the paper's setting]{req_rendered} :blue-badge[{dev_rendered}]")
    return info


def is_paper(root_dir: Path) -> bool:
    return str(load.profile(root_dir).get("profile")) == "paper"


def bundle_name(root_dir: Path) -> str:
    """``results-published/NAME`` of a bundle's folder (its path where it is not in such a folder)."""
    return f"{root_dir.parent.name}/{root_dir.name}" if root_dir.parent.name == load.layout.PUBLISHED else str(root_dir)


def bundle_caption(root_dir: Path, manifest: dict) -> str:
    """Which published bundle is shown and what made it: machine, CPU, torch, commit(s) (the manifest's
    provenance, :func:`pipeline.report.provenance`) and the date of its last merge."""
    from pipeline.report import provenance

    date = str(manifest.get("updated") or manifest.get("created") or "?")[:10]
    return f"Showing the published bundle {bundle_name(root_dir)} ({provenance(manifest)}; {date})."


def sidebar() -> None:
    root()  # initialise the widget's state before the widget
    with st.sidebar:
        st.text_input("Results root", key=ROOT_KEY, help="The directory holding data/, results/, baselines/ and metrics/ (the DVC workspace).")
        r = root()
        bundle = load.bundle_manifest(r)
        if bundle is not None:
            st.caption(md_text(bundle_caption(r, bundle)))
        profile_badge(r, st.sidebar)
        present = load.has_outputs(r)
        st.caption("outputs: " + " · ".join(f"{md_text(d)}/ {'found' if ok else 'missing'}" for d, ok in present.items()))


def require_outputs(root_dir: Path, *needed: str, user_runs: bool = False) -> bool:
    """Say what to run when none of ``needed`` (default: any pipeline output) exists yet; with
    ``user_runs``, the Restore page's finished runs count too."""
    present = load.has_outputs(root_dir)
    wanted = needed or tuple(present)
    if any(present.get(d, False) for d in wanted) or (user_runs and load.user_runs(root_dir)):
        return True
    if not root_dir.is_dir():
        st.error(f"The results root {md_code(root_dir)} does not exist. Start the dashboard with `dip dashboard --results DIR`.")
        return False
    st.info(
        f"No pipeline outputs under {md_code(root_dir)} yet ({', '.join(md_text(d + '/') for d in wanted)} missing or empty).\n\n"
        "Run the reproduction first:\n\n```bash\ndvc repro            # the whole pipeline (profile auto: quick on a CPU)\n"
        "dvc exp run -S profile=smoke   # a tiny run, under a minute\n```\n\nthen reload this page."
        + ("\n\nOr restore an image of yours on the Restore page." if user_runs else "")
    )
    return False
