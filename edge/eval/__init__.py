"""Tools beside the door: the LFW-half evaluation, its metrics, the benchmark and the sample portraits."""
