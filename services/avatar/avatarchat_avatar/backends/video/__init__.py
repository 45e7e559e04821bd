"""Video backends: ``local`` (the rig renderer) and ``did`` (D-ID's talks API)."""
