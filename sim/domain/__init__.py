"""The pure e-commerce core: standard library only, time passed in, no simulation randomness."""
