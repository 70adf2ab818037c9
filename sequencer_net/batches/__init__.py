"""Batches: how transactions become available to every validator before they are
ordered (`batch`: the format and its checks; `pool`: batches this validator
holds; `fetch`: asking peers for missing ones)."""
