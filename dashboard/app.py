"""Entry point: ``streamlit run dashboard/app.py [-- --results DIR]`` (or ``dip dashboard``).

A multipage app built with ``st.navigation``; each page is a file in ``dashboard/views/``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `streamlit run` does not install the package

from dashboard import ui  # noqa: E402

st.set_page_config(page_title="Deep Image Prior — results", page_icon="🖼️", layout="wide")

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/table_chart:", default=True),
    st.Page("views/curves.py", title="Curves", icon=":material/show_chart:"),
    st.Page("views/gallery.py", title="Gallery", icon=":material/photo_library:"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("views/ablations.py", title="Ablations", icon=":material/science:"),
    st.Page("views/restore.py", title="Restore", icon=":material/auto_fix_high:"),
]

# Pixel-exact viewing: the browser must not smooth enlarged images.
st.html("<style>[data-testid='stImage'] img, [data-testid='stFullScreenFrame'] img {image-rendering: pixelated;}</style>")



def guarded(what: str, run: Callable[[], object]) -> None:
    """Run one part of the app; an error the readers did not foresee becomes a short message (the
    traceback goes to the server's log, never to the browser) and the rest of the app still runs.
    Streamlit's own control flow (``st.stop``, reruns) derives from BaseException and passes."""
    try:
        run()
    except Exception as err:  # noqa: BLE001 - the last line of defence, on purpose
        logging.getLogger("dashboard").exception("%s failed", what)
        st.error(f"{ui.md_text(what)} could not be shown: {ui.md_text(type(err).__name__)}: {ui.md_text(str(err)[:300])}. The details are in the server's log.")


page = st.navigation(PAGES)
guarded("The sidebar", ui.sidebar)
try:
    title = page.title
except AttributeError:  # bare mode, e.g. a Dask/multiprocessing child that re-imports this file as __main__
    title = "this page"
guarded(f"The page {title}", page.run)
