"""Storage-independent engine: DeltaGlider format, xdelta3 codec, reference cache, store."""
