"""Plans as values: desired against recorded and observed, diffs, saved plans, presentation."""
