"""The commands: what `grader` does for students (check, list, hint, reset, watch), instructors (batch,
merge) and CI (ci, gradescope-bundle). Each builds its request and hands it to judging/ or gradebook/."""
