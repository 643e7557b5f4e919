"""Entry point: ``streamlit run dashboard/app.py [-- --results DIR]`` (or ``dip dashboard``).

A multipage app built with ``st.navigation``; each page is a file in ``dashboard/views/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `streamlit run` does not install the package

from dashboard import ui  # noqa: E402

st.set_page_config(page_title="Deep Image Prior — results", page_icon="🖼️", layout="wide")

PAGES = [
    st.Page("views/overview.py", title="Overview", icon="📊", default=True),
    st.Page("views/curves.py", title="Curves", icon="📈"),
    st.Page("views/gallery.py", title="Gallery", icon="🖼️"),
    st.Page("views/compare.py", title="Compare", icon="🔍"),
    st.Page("views/ablations.py", title="Ablations", icon="🧪"),
]

page = st.navigation(PAGES)
ui.sidebar()
page.run()
