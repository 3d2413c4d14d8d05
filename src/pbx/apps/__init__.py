"""Dialplan applications: what a call can be sent to besides an extension."""
