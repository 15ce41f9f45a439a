"""The pinned Casdoor: build it from its Go module (``install``), keep its secrets and
signing key (``state``), run it (``server``) and build its admin UI (``ui``)."""
