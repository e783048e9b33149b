"""The embedding cache: policy (memory and disk), keys, the zarr stores."""
