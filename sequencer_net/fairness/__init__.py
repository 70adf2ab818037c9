"""Fair ordering: the cryptographic core of the encrypted mempool.

`group` (secp256k1 scalars and points), `tdh2` (threshold encryption and the
threshold coin), `envelope` (the signed, encrypted transaction a user submits).
Pure code: no I/O, no clock; randomness only from the callers' `rng`.
"""
