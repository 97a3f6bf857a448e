"""defectops: the production path for visual defect detection models.

Importing the package first makes the process air-gapped (see `defectops.offline`).
"""

from defectops.offline import enforce_offline_env

enforce_offline_env()

__version__ = "0.1.0"


def submit(*args, **kwargs):
    """Run the training DAG on an engine: `defectops.pipelines.submission.submit`, imported lazily (it pulls in
    the engines)."""
    from defectops.pipelines.submission import submit as _submit

    return _submit(*args, **kwargs)
