"""Running student code: a supervised run (runner), its process tree (proctree) and the isolation it runs
under (isolation). The probe, loaded into every student process, lives in grader/probe/."""
