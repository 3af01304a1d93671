"""Statistics, the analytic twin, comparisons and where runs execute."""
