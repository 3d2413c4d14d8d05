"""Meet-me conference rooms: PINs, moderators, mute, lock, hold music, REST API."""
