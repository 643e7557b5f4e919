"""Where and how fits run: jobs, engines (in-process, Dask), writing a fit's folder, progress, threads, the dashboard server process."""
