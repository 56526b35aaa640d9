"""`facegate demo`: the real door loop on a synthetic scenario (:mod:`.scenario`), with a simulated lock."""
