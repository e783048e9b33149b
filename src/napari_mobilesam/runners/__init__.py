"""Where a stack's slices run: in this process or on a dask cluster; the jobs that write files."""
