"""Demo workloads that the chapters run, kept in files so that isolated processes
(``leaklab.measure.track_isolated``) and line profilers (``%mprun``) can import them."""
