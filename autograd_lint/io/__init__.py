"""Getting sources in: which files a run lints (discovery), reading and decoding them (notebooks included),
their dotted module names, and the on-disk result cache."""
