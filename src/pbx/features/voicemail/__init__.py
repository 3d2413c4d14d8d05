"""Voicemail: recording, mailbox storage, notification by e-mail and transcription."""
