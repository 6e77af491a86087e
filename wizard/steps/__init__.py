"""One module per wizard step; each `build()` draws its step and returns its named components."""
