"""Many runs: parameter sweeps (process pool or Dask) and comparisons of scenarios or run folders."""
