"""Call recording: relayed two-party calls to WAV, on demand and by policy."""
