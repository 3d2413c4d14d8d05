"""Media: SDP, offer/answer and codecs."""
