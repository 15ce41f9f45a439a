"""The pinned Casdoor: build it from its Go module (``install``), keep its secrets and
signing key (``state``), run it (``server``), keep secrets out of its ``record`` table
(``records``) and build its admin UI (``ui``)."""
