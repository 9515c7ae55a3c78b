"""Reports: the paper's tables beside this run's numbers, figures, and a generated README."""
