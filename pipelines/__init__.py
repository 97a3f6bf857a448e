"""defectops: the production path for visual defect detection models.

Importing the package first makes the process air-gapped (see `defectops.offline`).
"""

from defectops.offline import enforce_offline_env

enforce_offline_env()

__version__ = "0.1.0"
