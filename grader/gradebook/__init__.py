"""Grading a class: finding submissions, grading each in a worker process, and the gradebook folder with
its CSV, results and class summary page."""
