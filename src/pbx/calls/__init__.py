"""Calls: the B2BUA, dialplan and call detail records."""
