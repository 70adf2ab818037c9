"""The BFT consensus core: pure, sans-I/O, plus its deterministic simulator."""
