"""Loads the grader's probe into this student process; the grader puts this folder on PYTHONPATH."""
import os

if os.environ.get("GRADER_PROBE"):
    try:
        import grader_probe

        grader_probe.activate()
    except Exception:  # noqa: BLE001 - never crash student code, but tell the grader the probe is missing
        import json
        import traceback

        try:
            meta = json.loads(os.environ["GRADER_PROBE"])["meta"]
            errors = os.path.join(meta, "errors")  # the only part of meta/ an unprivileged run may write
            with open(os.path.join(errors if os.path.isdir(errors) else meta, f"probe-error-{os.getpid()}.txt"),
                      "w") as f:
                f.write(traceback.format_exc())
        except Exception:  # noqa: BLE001
            pass
