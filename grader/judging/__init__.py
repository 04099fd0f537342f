"""Judging: one pytest session over the check modules (session, plugin), what a check works with
(harness) and the reading of a run's evidence into processes, steps and explanations (evidence)."""
