"""Upper bounds shared by the file validation and the command line, kept free of heavy imports
so that ``ablate --help`` can name them without loading torch."""

MAX_SAMPLES = 50_000
"""Images one evaluation or sampling command draws: FID's customary 50,000; every sample is held
in memory until it is scored or saved."""
