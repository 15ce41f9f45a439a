"""iam_sidecar."""
