"""Supervision: listen to, whisper to and barge into an extension's live call."""
