"""Storage backends behind one interface (:mod:`.base`), built by :mod:`.factory`."""
