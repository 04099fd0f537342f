"""The learning-management systems as they really are: submissions as Canvas, Moodle, GitHub Classroom and
Gradescope hand them out (downloads.py), the roster that maps them to students (roster.py), assignments with due
dates and late policies (assignments.py) and the grade files each LMS imports (export.py)."""
