class WireError(ValueError):
    """Bytes that cannot be read as the header they claim to be, or a value that cannot be
    written into one. The message names the layer and what is wrong, e.g.
    "ipv4: buffer of 12 bytes shorter than 20-byte header", so a servicer can return it
    as INVALID_ARGUMENT as it is."""
