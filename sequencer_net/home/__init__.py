"""A node's home directory: its config (`config`), the network's genesis
(`genesis`), its key (`keystore`), setting a home up (`setup`) and the lock
that keeps a second process out (`lock`)."""
