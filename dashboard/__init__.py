"""Streamlit dashboard over the pipeline's tracked outputs (``docs/LAYOUT.md``).

Start it with ``dip dashboard`` or ``streamlit run dashboard/app.py [-- --results DIR]``.
"""
