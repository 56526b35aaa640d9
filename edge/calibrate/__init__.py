"""Field calibration: the door threshold from its own camera and household, with honest statistics."""
