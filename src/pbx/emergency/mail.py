"""
The e-mail that tells the designated people of an emergency call at once:
who called (name and extension), the number dialled, where they are, when,
and the callback number.  Sent with the voicemail feature's SMTP sender
(:func:`pbx.features.voicemail.mailer.send_voicemail_email`), which already
handles STARTTLS, AUTH and timeouts; every value that reaches a header is
cleaned the same way voicemail's are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid, parseaddr

from pbx.emergency.event import EmergencyEvent
from pbx.features.voicemail.mailer import EmailConfig, clean_header_text

__all__ = ["build_alert"]


def build_alert(config: EmailConfig, to: str, event: EmergencyEvent) -> bytes:
    """
    The alert for ``event`` to ``to``.

    :param config: the sender (its other settings say how to send).
    :returns: the message, with ``\\n`` line ends (the SMTP client makes them CRLF).
    """
    extension = clean_header_text(event.extension, 20)
    name = clean_header_text(event.caller_name, 80)
    who = f"{name} (extension {extension})" if name else f"extension {extension}"
    located = event.location
    where = (
        clean_header_text(located.address.describe(), 300)
        if located is not None
        else "UNKNOWN"
    )
    message = EmailMessage(policy=default_policy)
    message["From"] = config.sender
    message["To"] = to
    message["Subject"] = clean_header_text(
        f"EMERGENCY: {event.number} dialled by {who} at {where}"
    )
    message["Date"] = format_datetime(datetime.fromtimestamp(event.time, UTC))
    domain = parseaddr(config.sender)[1].rpartition("@")[2] or None
    message["Message-ID"] = make_msgid("emergency", domain=domain)
    message["Importance"] = "high"
    message["X-Priority"] = "1"
    lines = [
        f"{event.number} was dialled{f' (as {event.dialled})' if event.dialled != event.number else ''}.",
        "",
        f"Caller:    {who}",
        f"Time:      {event.when}",
        f"Location:  {where}",
    ]
    if located is not None:
        how = {
            "user": "set by the user",
            "subnet": "from the phone's network",
            "extension": "the extension's fixed location",
        }[located.origin]
        lines.append(f"           ({how}{f': {located.name}' if located.name else ''})")
        lines += [
            f"  {element}: {clean_header_text(value, 200)}"
            for element, value in located.address.elements
        ]
    else:
        lines.append("           no dispatchable location is known for this extension")
    if event.callback:
        lines.append(f"Callback:  {clean_header_text(event.callback, 40)}")
    if event.call_id:
        lines.append(f"Call:      {clean_header_text(event.call_id, 120)}")
    message.set_content("\n".join(lines) + "\n", cte="quoted-printable")
    return message.as_bytes()
