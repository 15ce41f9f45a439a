"""The memory API over gRPC (``hanzo.memory.v1``), served by the same service layer."""
