"""The echo test and the digit read-back: applications that prove the media path."""
