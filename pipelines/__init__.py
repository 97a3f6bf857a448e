"""`defectops.pipelines`: the training DAG (declared once), the engines that render and run it, and
`submit`, the one way a run starts. The rendered definitions live in `compiled/`."""
